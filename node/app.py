"""The node, composed in data-path order (ARCHITECTURE rule 8).

::

    DIMSE C-STORE ─┐
    STOW-RS ───────┴─▶ Ingest (file + catalog + queue) ─▶ Worker (decode ▶ normalise
                                                           ▶ embed ▶ index)
                       StabilityMonitor ─▶ study-stable listeners (auto KOS)
    REST (FastAPI) ◀── catalog + indexes

:func:`build_services` makes the parts; :class:`Node` starts and stops them. Nothing
here runs at import time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node.runtime import ModelState, Services, load_model, open_index
from node.settings import Settings
from node.storage import Ingest, StabilityMonitor, ThreadConnections
from node.storage.files import remove_leftovers

if TYPE_CHECKING:
    from indexer.embedder import Embedder
    from indexer.index import IndexSet

__all__ = ["EmbedderLoader", "Node", "build_services"]

log = logging.getLogger(__name__)

EmbedderLoader = Callable[[Settings], "Embedder"]


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
    """Starts and stops the node's threads: DIMSE, REST, model + worker, stability."""

    def __init__(self, settings: Settings, *, embedder_loader: EmbedderLoader = load_model):
        self.settings = settings
        self.services = build_services(settings)
        self._embedder_loader = embedder_loader
        self._stop = threading.Event()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._dimse: Any = None
        self._http: Any = None
        self.stability = StabilityMonitor(
            db_path=settings.db_path, quiet_s=settings.node.stable_after_s
        )
        self.worker: Any = None
        self.report_extraction: Any = None
        self.auto_kos: Any = None

    # -- the parts, in data-path order ------------------------------------------------

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
        self._http = uvicorn.Server(config)
        self._spawn("http", self._http.run)

    def _load_model_and_work(self) -> None:
        from indexer.errors import IndexerError

        try:
            embedder = self._embedder_loader(self.settings)
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
        self.worker = Worker(
            db_path=self.settings.db_path,
            data_dir=self.settings.node.data_dir,
            embedder=embedder,
            index_set=index_set,
            batch_size=w.batch_size,
            decode_processes=w.decode_processes,
            max_attempts=w.max_attempts,
            poll_interval_s=w.poll_interval_s,
        )
        self._spawn("worker", lambda: self.worker.run(self._stop))

    def _install_listeners(self) -> None:
        """Reports extracted at ingest; the automatic KOS on study-stable (when enabled)."""
        from node.kos import install_auto_kos
        from node.reports import install_report_extraction

        self.report_extraction = install_report_extraction(self.services)
        self.auto_kos = install_auto_kos(self.services, self.stability)

    # -- life cycle --------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], Any]) -> None:
        thread = threading.Thread(target=target, name=f"precedent-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> None:
        self._install_listeners()
        self._start_dimse()
        self._start_http()
        self._spawn("stability", lambda: self.stability.run(self._stop))
        self._spawn("model", self._load_model_and_work)

    def wait_http(self, timeout: float = 30.0) -> bool:
        """Wait until the REST server listens."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._http is not None and self._http.started:
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop every part (once; later calls do nothing) and save the indexes."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._dimse is not None:
            self._dimse.shutdown()
        if self._http is not None:
            self._http.should_exit = True
        for thread in self._threads:
            thread.join(timeout=30)
        for part in (self.worker, self.report_extraction, self.auto_kos):
            if part is not None:
                part.close()
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
