"""The running node's model and indexer worker: loading the model (and trying again
while it cannot be loaded), the worker's life, and the rebuild the node performs itself.

- :meth:`Indexing.load_and_work` (the supervisor's ``model`` thread): load the model,
  open the indexes, start the worker. While the model is unavailable (no folder yet, no
  weights, an unreachable hub) it tries again every ``retry_s`` seconds, so a model
  folder that appears is picked up without a restart. A model that does not match the
  index waits for a rebuild instead.
- :meth:`Indexing.rebuild` (an :class:`~node.operations.Operation`): load the new model
  first (one that cannot load changes nothing), then stop the worker, switch the index,
  start the worker and wait until the queue is drained. The model's state says
  ``rebuilding`` meanwhile and similar-case queries get 503: never answers from two
  models, never half an index.
- :meth:`Indexing.follow` (the ``follower`` thread, on a shared catalog only): every
  second the indexes apply what other processes' workers and deletions changed in the
  catalog (:meth:`~indexer.index.IndexSet.follow_changes`), so every node answers from
  the same vectors within a few seconds, without a rebuild.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from node.errors import StartupError
from node.operations import Operation
from node.runtime import ModelStatusValues, Services, open_index, volume_sampling
from node.settings import Settings

if TYPE_CHECKING:
    from indexer.embedder import Embedder
    from indexer.index import IndexSet
    from indexer.worker import Worker

__all__ = ["EmbedderLoader", "Indexing"]

log = logging.getLogger("node.supervisor")


class EmbedderLoader(Protocol):
    """Loads the model the settings name (``node.runtime.load_model``); tells
    ``on_progress`` what takes time (the first export of the image tower's engine)."""

    def __call__(self, settings: Settings, *,
                 on_progress: Callable[[str], None] | None = None) -> Embedder: ...


#: how long stopping waits for the worker (a batch in hand)
_JOIN_S = 30.0
#: how often a rebuild looks at the queue
_REBUILD_POLL_S = 0.2
#: how often the follower applies other processes' vector changes (shared catalog)
FOLLOW_S = 1.0


def _with_model(settings: Settings, name: str) -> Settings:
    return settings.model_copy(
        update={"model": settings.model.model_copy(update={"name": name, "path": None})})


class Indexing:
    """The model and the worker of one running node (built by the supervisor)."""

    def __init__(self, services: Services, stop: threading.Event, *,
                 loader: EmbedderLoader, retry_s: float,
                 spawn: Callable[[str, Callable[[], object]], threading.Thread]) -> None:
        self.services = services
        self._stop = stop
        self._loader = loader
        self._retry_s = retry_s
        self._spawn = spawn
        self._lock = threading.Lock()  # loading and rebuilding exclude each other
        self._worker_stop = threading.Event()
        self._worker_thread: threading.Thread | None = None
        self.worker: Worker | None = None

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def load_and_work(self) -> None:
        """Load the model and start the worker, trying again while the model is
        unavailable; returns when loaded, on a mismatch, on stop, or when a rebuild took
        over."""
        from indexer.errors import IndexerError, ModelMismatch

        model = self.services.model
        announced: str | None = None
        while not self._stop.is_set():
            with self._lock:
                if model.status in (ModelStatusValues.READY, ModelStatusValues.REBUILDING):
                    return
                try:
                    embedder = self._loader(self.settings, on_progress=model.set_loading)
                    if self._stop.is_set():
                        return  # stopped while loading: leave the indexes alone
                    index_set = open_index(self.settings, embedder)
                except ModelMismatch as exc:  # waits for a rebuild, not for a folder
                    model.set_unavailable(str(exc))
                    log.error("model unavailable: %s", exc)
                    return
                except IndexerError as exc:
                    reason = str(exc)
                    model.set_unavailable(reason)
                    if reason != announced:
                        log.error("model unavailable: %s (instances are still received and "
                                  "queued; the node tries again every %g s)", reason,
                                  self._retry_s)
                        announced = reason
                else:
                    model.set_ready(embedder, index_set)
                    log.info("model ready: %s (image tower: %s)", embedder.identity,
                             embedder.engine)
                    if self.settings.shared_catalog and not self._stop.is_set():
                        self._spawn("follower", self.follow)
                    if self.settings.worker.enabled and not self._stop.is_set():
                        self._start_worker(embedder, index_set)
                    return
            if self._stop.wait(self._retry_s):
                return

    def follow(self, interval_s: float = FOLLOW_S) -> None:
        """Apply other processes' vector changes to this node's indexes every
        ``interval_s`` until the node stops (a catalog that cannot be reached is tried
        again at the next turn, said once)."""
        from database import DatabaseError

        failing = False
        while not self._stop.wait(interval_s):
            index_set = self.services.model.index_set
            if index_set is None:
                continue
            try:
                index_set.follow_changes()
            except DatabaseError as exc:
                if not failing:
                    log.warning("the index cannot follow the catalog for now (%s); trying "
                                "again every %g s", exc, interval_s)
                failing = True
            else:
                if failing:
                    log.info("the index follows the catalog again")
                failing = False

    def _start_worker(self, embedder: Embedder, index_set: IndexSet) -> None:
        from indexer.worker import Worker

        w = self.settings.worker
        worker = Worker(
            catalog=self.settings.catalog_target,
            data_dir=self.settings.node.data_dir,
            embedder=embedder,
            index_set=index_set,
            sampling=volume_sampling(self.settings),
            batch_size=w.batch_size,
            decode_processes=w.decode_processes,
            max_attempts=w.max_attempts,
            poll_interval_s=w.poll_interval_s,
            claimer=self._claimer(),
        )
        self.worker = worker
        stop = self._worker_stop = threading.Event()
        if self._stop.is_set():
            stop.set()
        self._worker_thread = self._spawn("worker", lambda: worker.run(stop))

    def _claimer(self) -> str | None:
        """What the worker claims under: none alone on an embedded catalog; on a shared
        one this process' registry id (a fresh one where none was registered, so that
        its start never takes back another process' claims)."""
        if not self.settings.shared_catalog:
            return None
        if self.services.process_id is None:
            self.services.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
        return self.services.process_id

    def signal_stop(self) -> None:
        """Tell the worker to stop (the node is stopping); :meth:`stop_worker` waits."""
        self._worker_stop.set()

    def stop_worker(self) -> None:
        """Stop the worker (its batch in hand finishes or goes back to the queue) and
        close it."""
        self._worker_stop.set()
        thread, self._worker_thread = self._worker_thread, None
        if thread is not None:
            thread.join(_JOIN_S)
            if thread.is_alive():
                log.warning("stopping: the worker thread has not finished; not waiting for it")
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def rebuild(self, model: str | None, op: Operation) -> None:
        """Re-embed everything with ``model`` (or the current one); see the module."""
        from indexer import queue

        if not self.settings.worker.enabled:
            raise StartupError("setting 'worker.enabled' = false: this node does not index, "
                               "so it cannot rebuild; enable its worker")
        settings = self.settings if model is None else _with_model(self.settings, model)
        op.progress("loading the model", 0)
        embedder = self._loader(settings, on_progress=lambda doing: op.progress(doing, 0))
        state = self.services.model
        with self._lock:
            if self._stop.is_set():
                return
            index_set = state.index_set or open_index(settings)
            state.set_rebuilding(f"the node is rebuilding its index with {embedder.identity}; "
                                 "similar-case answers resume when it is done", index_set)
            self.stop_worker()
            requeued = index_set.switch_model(embedder.identity, embedder.dim)
            self.services.settings = settings
            self._start_worker(embedder, index_set)
        log.info("rebuilding: re-embedding %d instances with %s", requeued, embedder.identity)
        op.progress("re-embedding", requeued)
        conn = self.services.connections.get()
        while True:
            waiting = queue.counts(conn).waiting
            done = max(0, requeued - waiting)
            op.advance(done)
            state.set_rebuilding(f"the node is rebuilding its index with {embedder.identity} "
                                 f"({done} of {requeued} instances); similar-case answers "
                                 "resume when it is done")
            if waiting == 0:
                break
            if self._stop.wait(_REBUILD_POLL_S):
                return
        state.set_ready(embedder, index_set)
        log.info("rebuilt: the index holds %s", embedder.identity)
        if model is not None:
            op.detail = (f"the node now uses {model}; to keep it after a restart, set "
                         f"[model] name = \"{model}\" (or [model] path) in its settings")
