"""The node's service supervisor: it builds the parts, starts them in data-path order and
stops them all, within seconds.

::

    DIMSE C-STORE ─┐                                    ┌─▶ report extraction (listener)
    STOW-RS ───────┴─▶ Ingest (file + catalog + queue) ─┤
                                                        └─▶ Worker (decode ▶ normalise
                                                             ▶ embed ▶ index)
                       StabilityMonitor ─▶ study-stable listeners (automatic KOS)
    REST (FastAPI) ◀── catalog + indexes

:func:`build_services` makes what the protocol adapters share; :class:`Node` owns the
threads. Every part waits on the node's one stop event, so :meth:`Node.stop` never
hangs on a wait. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from node.runtime import ModelState, Services, load_model, open_index, volume_sampling
from node.settings import Settings
from node.storage import Ingest, StabilityMonitor, ThreadConnections
from node.storage.files import remove_leftovers

if TYPE_CHECKING:
    import uvicorn
    from pynetdicom.transport import ThreadedAssociationServer

    from indexer.embedder import Embedder
    from indexer.index import IndexSet
    from indexer.worker import Worker
    from node.key_objects import AutoKos
    from node.reporting import ReportExtraction

__all__ = ["EmbedderLoader", "Node", "build_services"]

log = logging.getLogger(__name__)

EmbedderLoader = Callable[[Settings], "Embedder"]

#: how long stop waits for a thread that honours the stop event (a batch in hand)
_JOIN_S = 30.0
#: how long stop waits for the model to finish loading (it cannot be interrupted; the
#: thread is a daemon and does nothing more once it sees the stop event)
_MODEL_JOIN_S = 1.0


def build_services(settings: Settings) -> Services:
    """The storage side of the node: ready to ingest before any model is loaded."""
    data_dir = settings.node.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_leftovers(data_dir)
    if removed:
        log.info("removed %d partial writes left by an interrupted run", removed)
    ingest = Ingest(
        data_dir=data_dir,
        db_path=settings.db_path,
        duplicate_policy=settings.node.duplicate_policy,
        reserve_bytes=settings.node.free_space_reserve_mb * 1024 * 1024,
    )
    return Services(
        settings=settings,
        ingest=ingest,
        connections=ThreadConnections(settings.db_path),
        model=ModelState(),
    )


class Node:
    """Starts and stops the node's parts: listeners, DIMSE, REST, stability, model and
    worker."""

    def __init__(self, settings: Settings, *,
                 embedder_loader: EmbedderLoader = load_model) -> None:
        self.settings = settings
        self.services = build_services(settings)
        self._embedder_loader = embedder_loader
        self._stop = threading.Event()
        self._stopped = False
        self._threads: dict[str, threading.Thread] = {}
        self._dimse: ThreadedAssociationServer | None = None
        self._http: uvicorn.Server | None = None
        self.stability = StabilityMonitor(
            db_path=settings.db_path, quiet_s=settings.node.stable_after_s
        )
        self.worker: Worker | None = None
        self.report_extraction: ReportExtraction | None = None
        self.auto_kos: AutoKos | None = None

    # -- the pipeline, in data-path order ----------------------------------------------

    def start(self) -> None:
        """Start every part, in data-path order."""
        # what follows a stored instance: its report, and (once the study is stable)
        # the automatic KOS; hooked in before anything can arrive
        self._install_listeners()
        # the ways in: DIMSE and REST (STOW-RS, and the similar-case queries)
        self._start_dimse()
        self._start_http()
        # study completeness
        self._spawn("stability", lambda: self.stability.run(self._stop))
        # the model, then the worker that turns the queue into vectors
        self._spawn("model", self._load_model_and_work)

    def _install_listeners(self) -> None:
        """Reports extracted at ingest; the automatic KOS on study-stable (when enabled)."""
        from node.key_objects import install_auto_kos
        from node.reporting import install_report_extraction

        self.report_extraction = install_report_extraction(self.services, stop=self._stop)
        self.auto_kos = install_auto_kos(self.services, self.stability, stop=self._stop)

    def _start_dimse(self) -> None:
        from node.dimse.scp import start_dimse_server

        self._dimse = start_dimse_server(self.services)

    def _start_http(self) -> None:
        import uvicorn

        from node.web import create_app

        http = self.settings.http
        config = uvicorn.Config(
            create_app(self.services), host=http.host, port=http.port,
            log_level="warning", access_log=False, lifespan="off",
        )
        server = uvicorn.Server(config)
        self._http = server
        self._spawn("http", server.run)

    def _load_model_and_work(self) -> None:
        from indexer.errors import IndexerError

        try:
            embedder = self._embedder_loader(self.settings)
            if self._stop.is_set():
                return  # stopped while loading: leave the indexes alone
            index_set = open_index(self.settings, embedder)
        except IndexerError as exc:
            self.services.model.set_unavailable(str(exc))
            log.error("model unavailable: %s (instances are still received and queued)", exc)
            return
        self.services.model.set_ready(embedder, index_set)
        if self.settings.worker.enabled and not self._stop.is_set():
            self._start_worker(embedder, index_set)

    def _start_worker(self, embedder: Embedder, index_set: IndexSet) -> None:
        from indexer.worker import Worker

        w = self.settings.worker
        worker = Worker(
            db_path=self.settings.db_path,
            data_dir=self.settings.node.data_dir,
            embedder=embedder,
            index_set=index_set,
            sampling=volume_sampling(self.settings),
            batch_size=w.batch_size,
            decode_processes=w.decode_processes,
            max_attempts=w.max_attempts,
            poll_interval_s=w.poll_interval_s,
        )
        self.worker = worker
        self._spawn("worker", lambda: worker.run(self._stop))

    # -- life cycle --------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], object]) -> None:
        thread = threading.Thread(target=target, name=f"precedent-{name}", daemon=True)
        thread.start()
        self._threads[name] = thread

    def wait_http(self, timeout: float = 30.0) -> bool:
        """Wait until the REST server listens."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._http is not None and self._http.started:
                return True
            if self._stop.wait(0.02):
                return False
        return False

    def stop(self) -> None:
        """Stop every part (once; later calls do nothing) and save the indexes."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        # the ways in first: nothing new arrives
        if self._dimse is not None:
            self._dimse.shutdown()
        if self._http is not None:
            self._http.should_exit = True
        # the listeners' waits end on the stop event; what they had queued is dropped
        # (the report catch-up at the next start does it)
        for listener in (self.auto_kos, self.report_extraction):
            if listener is not None:
                listener.close()
        for name, thread in list(self._threads.items()):
            thread.join(timeout=_MODEL_JOIN_S if name == "model" else _JOIN_S)
            if thread.is_alive():
                log.warning("stopping: the %s thread has not finished; not waiting for it",
                            name)
        if self.worker is not None:
            self.worker.close()
        index_set = self.services.model.index_set
        if index_set is not None:
            index_set.save()

    def serve_forever(self) -> None:
        """Run until SIGINT or SIGTERM."""
        import signal

        def _stop(*_: object) -> None:
            self._stop.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        self.start()
        while not self._stop.wait(1.0):
            pass
        log.info("stopping")
        self.stop()
