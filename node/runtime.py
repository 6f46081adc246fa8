"""The running node's parts, built once at start-up and passed down (no globals).

``Services`` is what the protocol adapters (DIMSE handlers, REST routes) are given:
the settings, the ingest path, per-thread catalog connections, the model state and the
administrative operations the running node performs. :func:`load_model` and
:func:`open_index` build the embedder and the indexes from the settings (torch and
open_clip are imported only then; an ``hf-hub:`` model that can be had neither from the
local cache nor from the hub fails first, in seconds). On a CPU the embedder runs the
image tower on the engine ``[model] engine`` names, exported once into
``data_dir/engines``; while it exports, the model's state says so. :func:`volume_sampling`
is the worker's ``[indexer]`` sampling. :func:`index_dir` is where this process keeps its
index files: ``data_dir/index``, or on a shared catalog a folder of its own under it
(several processes share the data folder; each keeps its own copy of the index and
follows the catalog's change log, docs/postgres.md §6).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from node.errors import ModelNotReady
from node.settings import Settings
from node.storage import Ingest, ThreadConnections

if TYPE_CHECKING:
    from indexer.embedder import Embedder
    from indexer.index import IndexSet
    from indexer.sampling import VolumeSampling
    from node.backfill.manager import BackfillManager
    from node.operations import Operations

__all__ = ["ModelState", "ModelStatusValues", "Services", "engines_dir", "index_dir",
           "load_model", "open_index", "volume_sampling"]

log = logging.getLogger(__name__)


class ModelStatusValues(str, Enum):
    """Where the model stands; similar-case answers only when ``ready``."""

    LOADING = "loading"
    READY = "ready"
    UNAVAILABLE = "unavailable"
    #: the node re-embeds everything with a new model; answers wait (never mixed)
    REBUILDING = "rebuilding"


class ModelState:
    """The embedder and the indexes, once loaded; or why they are not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status = ModelStatusValues.LOADING
        self.reason: str | None = "the model is loading"
        self.embedder: Embedder | None = None
        self.index_set: IndexSet | None = None
        self.ready = threading.Event()

    def set_ready(self, embedder: Embedder, index_set: IndexSet) -> None:
        with self._lock:
            self.embedder, self.index_set = embedder, index_set
            self.status, self.reason = ModelStatusValues.READY, None
        self.ready.set()

    def set_loading(self, reason: str) -> None:
        """What the load is doing now (e.g. exporting the image tower); ignored unless the
        model is loading (or was unavailable and is now loading after all)."""
        with self._lock:
            if self.status in (ModelStatusValues.LOADING, ModelStatusValues.UNAVAILABLE):
                self.status, self.reason = ModelStatusValues.LOADING, reason

    def set_unavailable(self, reason: str) -> None:
        with self._lock:
            self.status, self.reason = ModelStatusValues.UNAVAILABLE, reason

    def set_rebuilding(self, reason: str, index_set: IndexSet | None = None) -> None:
        """Answers wait until :meth:`set_ready`: the index is being re-embedded. The
        index set (when given) stays reachable for deletions."""
        with self._lock:
            self.ready.clear()
            self.status, self.reason = ModelStatusValues.REBUILDING, reason
            self.embedder = None
            if index_set is not None:
                self.index_set = index_set

    def require(self) -> tuple[Embedder, IndexSet]:
        """The embedder and indexes, or :class:`ModelNotReady` with the reason."""
        with self._lock:
            if (self.status is not ModelStatusValues.READY or self.embedder is None
                    or self.index_set is None):
                raise ModelNotReady(self.reason or "the model is not loaded")
            return self.embedder, self.index_set

    def as_json(self) -> dict[str, object]:
        """Status, reason, the model's identity and the engine that runs its image tower
        (e.g. ``openvino int8``, ``torch bf16``; None until loaded)."""
        with self._lock:
            identity = getattr(self.embedder, "identity", None)
            engine = getattr(self.embedder, "engine", None)
            return {"status": self.status.value, "reason": self.reason, "identity": identity,
                    "engine": engine}


@dataclass
class Services:
    """Everything a protocol adapter needs, built by :func:`node.supervisor.build_services`."""

    settings: Settings
    ingest: Ingest
    connections: ThreadConnections
    model: ModelState = field(default_factory=ModelState)
    #: set once the DIMSE listener accepts associations
    dimse_ready: threading.Event = field(default_factory=threading.Event)
    #: imports and rebuilds the running node performs for its admin API (None outside
    #: a running node)
    operations: Operations | None = None
    #: the node's backfills, once the supervisor has started them (None outside a
    #: running node)
    backfill: BackfillManager | None = None
    #: this process' id in the catalog's process registry (shared catalog), which its
    #: worker claims under; None in the embedded set-up
    process_id: str | None = None


def load_model(settings: Settings, *,
               on_progress: Callable[[str], None] | None = None) -> Embedder:
    """The embedder named by ``[model]`` (raises ``ModelUnavailable`` with the fix), its
    image tower on the engine ``[model] engine`` / ``engine_precision`` choose, cached in
    ``data_dir/engines``. ``on_progress`` is told what takes time (an export)."""
    from indexer.embedder import load_embedder
    from indexer.model_files import check_available

    m = settings.model
    if m.path is None:
        check_available(m.name)
    return load_embedder(
        name=m.name,
        path=m.path,
        pretrained=m.pretrained,
        device=m.device,
        precision=m.precision,
        batch_size=m.batch_size,
        engine=m.engine,
        engine_precision=m.engine_precision,
        cache_dir=engines_dir(settings),
        on_progress=on_progress,
    )


def engines_dir(settings: Settings) -> Path:
    """Where the image tower's engine exports are kept: ``data_dir/engines``."""
    return settings.node.data_dir / "engines"


def index_dir(settings: Settings) -> Path:
    """Where this process keeps its index files: ``data_dir/index``; on a shared catalog
    ``data_dir/index/<host>-<http port>`` (one folder per serving process, the same after
    a restart, so its saved files are replayed from their horizon, not rebuilt)."""
    base = settings.node.data_dir / "index"
    if not settings.shared_catalog:
        return base
    return base / f"{socket.gethostname()}-{settings.http.port}"


def open_index(settings: Settings, embedder: Embedder | None = None) -> IndexSet:
    """The per-level usearch indexes, rebuilt from the catalog if needed; bound to
    ``embedder``'s model when given (its vectors only), else as the catalog holds them."""
    from indexer.index import IndexSet

    ix = settings.index
    return IndexSet.open(
        catalog=settings.catalog_target,
        index_dir=index_dir(settings),
        model_id=embedder.identity if embedder is not None else None,
        dim=embedder.dim if embedder is not None else None,
        dtype=ix.dtype,
        level_dtypes=ix.level_dtype,
        connectivity=ix.connectivity,
        expansion_add=ix.expansion_add,
        expansion_search=ix.expansion_search,
    )


def volume_sampling(settings: Settings) -> VolumeSampling:
    """How the worker samples volumes (``[indexer]``)."""
    from indexer.sampling import VolumeSampling

    ix = settings.indexer
    return VolumeSampling(slices_per_series=ix.slices_per_series,
                          per_modality=ix.slices_per_modality,
                          series_quiet_s=ix.series_quiet_s)
