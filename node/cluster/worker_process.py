"""``precedent worker``: the indexer alone, on a PostgreSQL catalog shared with the
``serve`` processes (no DIMSE, no HTTP).

It registers in the catalog (:mod:`node.cluster.registry`), takes part in the
maintenance leadership (:mod:`node.cluster.leader`), loads the model (again every few
seconds while it cannot) and runs an :class:`indexer.worker.Worker` whose claims carry
its process id. SIGTERM or SIGINT stops it within seconds: the batch in hand finishes or
goes back, its remaining claims are handed back at once, and its registration ends (a
SIGKILL ends it too: the leader hands its claims back).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from node.cluster.leader import MaintenanceLeader
from node.cluster.registry import ProcessKindValues, Registration
from node.errors import StartupError
from node.settings import Settings

if TYPE_CHECKING:
    from indexer.worker import Worker

__all__ = ["SEPARATE_WORKER_NEEDS_POSTGRESQL", "WorkerProcess"]

log = logging.getLogger("node.worker")

SEPARATE_WORKER_NEEDS_POSTGRESQL = (
    'a separate worker needs [catalog] url = "postgresql://…"; the embedded set-up '
    "indexes inside precedent serve")
#: how often a model that cannot be loaded is tried again
MODEL_RETRY_S = 5.0


class WorkerProcess:
    """The worker's parts and their life: :meth:`run` until :meth:`stop` (or a signal,
    with :meth:`run_until_signalled`)."""

    def __init__(self, settings: Settings, *, model_retry_s: float = MODEL_RETRY_S) -> None:
        if not settings.shared_catalog:
            raise StartupError(SEPARATE_WORKER_NEEDS_POSTGRESQL)
        self.settings = settings
        self.model_retry_s = model_retry_s
        self.stop_event = threading.Event()
        self.worker: Worker | None = None
        self.registration = Registration(
            settings.catalog_target, kind=ProcessKindValues.WORKER,
            data_dir=str(settings.node.data_dir), model_id=self._model_id)
        self.leader = MaintenanceLeader(settings.catalog_target)

    def _model_id(self) -> str | None:
        return self.worker.embedder.identity if self.worker is not None else None

    @property
    def process_id(self) -> str:
        return self.registration.id

    @property
    def index_dir(self) -> Path:
        """The worker's own index folder, ``data_dir/index/<host>-worker-<pid>``: the
        worker only adds to it (the serving processes answer from theirs); removed at
        stop."""
        return (Path(self.settings.node.data_dir) / "index"
                / f"{socket.gethostname()}-worker-{os.getpid()}")

    def _load(self) -> Worker | None:
        """The worker, once the model loads; ``None`` when stopped first."""
        from indexer.errors import IndexerError
        from indexer.index import IndexSet
        from indexer.worker import Worker
        from node.runtime import load_model, volume_sampling

        announced = None
        while not self.stop_event.is_set():
            try:
                embedder = load_model(self.settings)
                ix = self.settings.index
                index_set = IndexSet.open(
                    catalog=self.settings.catalog_target, index_dir=self.index_dir,
                    model_id=embedder.identity, dim=embedder.dim, dtype=ix.dtype,
                    level_dtypes=ix.level_dtype, connectivity=ix.connectivity,
                    expansion_add=ix.expansion_add, expansion_search=ix.expansion_search)
            except IndexerError as exc:
                if str(exc) != announced:
                    log.error("model unavailable: %s (the worker tries again every %g s)",
                              exc, self.model_retry_s)
                    announced = str(exc)
                self.stop_event.wait(self.model_retry_s)
                continue
            w = self.settings.worker
            return Worker(catalog=self.settings.catalog_target,
                          data_dir=self.settings.node.data_dir, embedder=embedder,
                          index_set=index_set, sampling=volume_sampling(self.settings),
                          batch_size=w.batch_size, decode_processes=w.decode_processes,
                          max_attempts=w.max_attempts, poll_interval_s=w.poll_interval_s,
                          claimer=self.process_id)
        return None

    def run(self) -> None:
        """Register, lead when it falls to this process, index until stopped; then hand
        back what is claimed and leave the registry."""
        from indexer import queue
        from node.storage import connect

        Path(self.settings.node.data_dir).mkdir(parents=True, exist_ok=True)
        conn = connect(self.settings.catalog_target)  # the catalog's tables, once
        conn.close()
        self.registration.register()
        leader = threading.Thread(target=self.leader.run, args=(self.stop_event,),
                                  name="precedent-leader", daemon=True)
        leader.start()
        try:
            self.worker = self._load()
            if self.worker is not None:
                self.registration.refresh()  # its model, in the registry at once
                log.info("worker %s indexing with %s", self.process_id,
                         self.worker.embedder.identity)
                self.worker.run(self.stop_event)
        finally:
            self.stop_event.set()
            if self.worker is not None:
                self.worker.close()
            conn = connect(self.settings.catalog_target, create_schema=False)
            try:
                returned = queue.return_claims(conn, [self.process_id])
            finally:
                conn.close()
            if returned:
                log.info("stopping: %d claimed instances handed back", returned)
            leader.join(timeout=5.0)
            self.registration.close()
            shutil.rmtree(self.index_dir, ignore_errors=True)

    def stop(self) -> None:
        self.stop_event.set()

    def run_until_signalled(self) -> None:
        """:meth:`run` until SIGINT or SIGTERM."""
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        self.run()
        log.info("stopped")
