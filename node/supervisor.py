"""The node's service supervisor: it takes the data folder, builds the parts, starts them
in data-path order and stops them all, within seconds.

::

    DIMSE C-STORE ─┐                                    ┌─▶ report duties (listener)
    STOW-RS ───────┤                                    │
    backfill ──────┴─▶ Ingest (file + catalog + queue) ─┤
                                                        └─▶ Worker (decode ▶ normalise
                                                             ▶ embed ▶ index)
                       StabilityMonitor ─▶ KOS duties (automatic KOS), listeners
    duties (reports, KOS) ◀── claimed by any serve process; MaintenanceLeader: claims of
                              the dead handed back (PostgreSQL)
    REST (FastAPI) ◀── catalog + indexes;  admin API ─▶ Operations (import, rebuild,
                                                        collection), backfills (PACS)

:func:`build_services` makes what the protocol adapters share; :class:`Node` owns the
data folder (its lock, :mod:`node.data_folder`; on a PostgreSQL catalog several processes
share the storage root and each registers in the catalog instead, :mod:`node.cluster`)
and the threads. Start-up binds every
listener or none (:mod:`node.startup`), and says what is open to whom. The model is
loaded in the background and, while it cannot be, tried again every few seconds (a
model folder that appears is picked up without a restart). A rebuild with another model
is the node's own: it stops its worker, switches the index, re-embeds, and answers no
similar-case query meanwhile. The backfills (:mod:`node.backfill`) run inside the node
like its operations: what a stop or a crash left in hand is settled before the listeners
open, the running ones go on once they are open, and at stop their PACS associations are
aborted before the DIMSE listener their C-MOVEs deliver to goes. Every part waits on the
node's one stop event, so :meth:`Node.stop` never hangs on a wait. Nothing here runs at
import time.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import database
from node.cluster.leader import MaintenanceLeader
from node.cluster.registry import ProcessKindValues, Registration
from node.data_folder import DataFolderLock, Owner, OwnerRoleValues, admin_token, prepare
from node.errors import StartupError
from node.indexing import EmbedderLoader, Indexing
from node.operations import Operations
from node.runtime import ModelState, Services, load_model
from node.settings import Settings
from node.startup import bind_error, bind_http, client_url, exposure_lines
from node.storage import Ingest, StabilityMonitor, ThreadConnections, duties
from node.storage.files import remove_leftovers

if TYPE_CHECKING:
    import uvicorn
    from pynetdicom.transport import ThreadedAssociationServer

    from indexer.worker import Worker
    from node.backfill.limits import Clock
    from node.backfill.manager import BackfillManager
    from node.key_objects import AutoKos
    from node.reporting import ReportExtraction

__all__ = ["EmbedderLoader", "Node", "build_services"]

log = logging.getLogger(__name__)

#: how long stop waits for a thread that honours the stop event (a batch in hand)
_JOIN_S = 30.0
#: how long stop waits for the model to finish loading (it cannot be interrupted; the
#: thread is a daemon and does nothing more once it sees the stop event)
_MODEL_JOIN_S = 1.0
#: how often a model that cannot be loaded is tried again
MODEL_RETRY_S = 5.0


def build_services(settings: Settings) -> Services:
    """The storage side of the node: ready to ingest before any model is loaded. The
    caller owns the data folder (holds its lock)."""
    data_dir = settings.node.data_dir
    prepare(data_dir)
    # a shared storage root holds the parts other processes are writing now
    removed = 0 if settings.shared_catalog else remove_leftovers(data_dir)
    if removed:
        log.info("removed %d partial writes left by an interrupted run", removed)
    ingest = Ingest(
        data_dir=data_dir,
        catalog=settings.catalog_target,
        duplicate_policy=settings.node.duplicate_policy,
        reserve_bytes=settings.node.free_space_reserve_mb * 1024 * 1024,
    )
    return Services(
        settings=settings,
        ingest=ingest,
        connections=ThreadConnections(settings.catalog_target),
        model=ModelState(),
    )


def _with_admin_token(settings: Settings, token: str) -> Settings:
    return settings.model_copy(
        update={"http": settings.http.model_copy(update={"admin_token": token})})


class Node:
    """Owns a data folder and starts and stops the node's parts: listeners, DIMSE,
    REST, backfills, stability, model and worker.

    Constructing it takes the data folder's lock (:class:`~node.errors.DataFolderBusy`
    when another process holds it; on a PostgreSQL catalog, whose processes share the
    storage root and register in the catalog when they start, a card of its own in the
    folder) and the admin token
    (made at the first start when none is configured); :meth:`stop` gives the folder up.
    """

    def __init__(self, settings: Settings, *,
                 embedder_loader: EmbedderLoader = load_model,
                 model_retry_s: float = MODEL_RETRY_S,
                 clock: Clock | None = None) -> None:
        data_dir = settings.node.data_dir
        prepare(data_dir)
        owner = Owner(pid=os.getpid(), role=OwnerRoleValues.NODE, command="precedent serve",
                      http_url=client_url(settings.http))
        # a shared folder (PostgreSQL): the node's own card, not the folder's lock
        self._lock = (DataFolderLock.acquire_card(data_dir, owner) if settings.shared_catalog
                      else DataFolderLock.acquire(data_dir, owner))
        built = False
        try:
            token, self.admin_token_file = admin_token(data_dir, settings.http.admin_token)
            token_file = str(self.admin_token_file) if self.admin_token_file else None
            self._lock.write(replace(owner, admin_token_file=token_file))
            self.services = build_services(_with_admin_token(settings, token))
            built = True
        finally:
            if not built:
                self._lock.release()
        self._stop = threading.Event()
        self._stopped = False
        self._threads: dict[str, threading.Thread] = {}
        self._dimse: ThreadedAssociationServer | None = None
        self._http: uvicorn.Server | None = None
        self._http_socket: socket.socket | None = None
        self.stability = StabilityMonitor(
            catalog=self.settings.catalog_target, quiet_s=self.settings.node.stable_after_s
        )
        # this process in the catalog (PostgreSQL): its claims carry this id
        self.services.process_id = self.services.process_id or str(uuid.uuid4())
        self.registration = Registration(
            self.settings.catalog_target, kind=ProcessKindValues.SERVE,
            process_id=self.services.process_id, data_dir=str(data_dir),
            model_id=self._model_id, ae_title=self.settings.node.ae_title,
            http_url=client_url(self.settings.http))
        self.leader = MaintenanceLeader(self.settings.catalog_target)
        self.report_extraction: ReportExtraction | None = None
        self.auto_kos: AutoKos | None = None
        self.indexing = Indexing(self.services, self._stop, loader=embedder_loader,
                                 retry_s=model_retry_s, spawn=self._spawn)
        self.services.operations = Operations(self.services, self._stop,
                                              rebuild=self.indexing.rebuild)
        # the backfills run inside the node, like its operations, on its stop event
        self.backfill = self._backfill_manager(clock)
        self.services.backfill = self.backfill

    @property
    def settings(self) -> Settings:
        """The settings the node runs with (its admin token filled in; the model a
        rebuild switched to)."""
        return self.services.settings

    @property
    def worker(self) -> Worker | None:
        return self.indexing.worker

    def _model_id(self) -> str | None:
        embedder = self.services.model.embedder
        return embedder.identity if embedder is not None else None

    # -- the pipeline, in data-path order ----------------------------------------------

    def start(self) -> None:
        """Start every part, in data-path order: every listener, or none (a
        :class:`~node.errors.StartupError` naming the setting, and the node stopped)."""
        started = False
        try:
            # the HTTP port first: a taken one stops start-up before anything listens
            self._http_socket = bind_http(self.settings.http)
            # in the catalog before any claim carries this process's id
            self._register()
            # what follows a stored instance: its report, and (once the study is stable)
            # the automatic KOS; hooked in before anything can arrive
            self._install_listeners()
            # the backfills' plan: what a stop or a crash left in hand is settled before
            # anything can arrive
            self.backfill.recover()
            # the ways in: DIMSE and REST (STOW-RS, and the similar-case queries)
            self._start_dimse()
            self._start_http(self._http_socket)
            started = True
        finally:
            if not started:
                self.stop()
        self._announce()
        # the backfills that were running (their C-MOVEs come in through the DIMSE
        # listener)
        self.backfill.start()
        # study completeness; the cluster's housekeeping, when this process leads
        self._spawn("stability", lambda: self.stability.run(self._stop))
        self._spawn("leader", lambda: self.leader.run(self._stop))
        # the model, then the worker that turns the queue into vectors
        self._spawn("model", self.indexing.load_and_work)

    def _register(self) -> None:
        """Register in the catalog (PostgreSQL); on SQLite, one process, the duties a
        crash left in progress are pending again."""
        if self.settings.shared_catalog:
            self.registration.register()
            return
        conn = self.services.connections.get()
        with database.transaction(conn):
            duties.reset_in_progress(conn)

    def _install_listeners(self) -> None:
        """Reports extracted at ingest; the automatic KOS's duties of stable studies
        (when enabled)."""
        from node.key_objects import install_auto_kos
        from node.reporting import install_report_extraction

        self.report_extraction = install_report_extraction(self.services, stop=self._stop)
        self.report_extraction.start()
        self.auto_kos = install_auto_kos(self.services, self.stability, stop=self._stop,
                                         claimer=self.registration.id)
        if self.auto_kos is not None:
            self.auto_kos.start()

    def _backfill_manager(self, clock: Clock | None) -> BackfillManager:
        """The node's backfills (:mod:`node.backfill`); ``clock`` is the local time their
        windows are read on (default: this machine's)."""
        from node.backfill.limits import local_now
        from node.backfill.manager import BackfillManager

        return BackfillManager(self.services, stop=self._stop, clock=clock or local_now)

    def _start_dimse(self) -> None:
        from node.dimse.scp import start_dimse_server

        node = self.settings.node
        try:
            self._dimse = start_dimse_server(self.services)
        except ssl.SSLError as exc:
            raise StartupError(f"setting 'node.tls': the certificate or key cannot be used "
                               f"({exc.reason or exc})") from None
        except OSError as exc:
            raise bind_error(exc, host_setting="node.host", host=node.host,
                             port_setting="node.dimse_port", port=node.dimse_port) from None

    def _start_http(self, sock: socket.socket) -> None:
        import uvicorn

        from node.web import create_app

        config = uvicorn.Config(
            create_app(self.services), log_level="warning", access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        self._http = server
        self._spawn("http", lambda: server.run(sockets=[sock]))

    def _announce(self) -> None:
        """One line each: what is open, and to whom."""
        from node.storage import aes

        sources = [s.ae_title for s in aes.list_sources(self.services.connections.get())]
        for line in exposure_lines(self.settings.node, self.settings.http, sources=sources,
                                   admin_token_file=self.admin_token_file):
            log.info("%s", line)

    # -- life cycle --------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], object]) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"precedent-{name}", daemon=True)
        thread.start()
        self._threads[name] = thread
        return thread

    @property
    def data_dir(self) -> Path:
        return self.settings.node.data_dir

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
        """Stop every part (once; later calls do nothing), save the indexes and give the
        data folder up."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self.indexing.signal_stop()
        # the ways in first: nothing new arrives (the backfills' PACS associations are
        # aborted before the DIMSE listener their C-MOVEs deliver to goes)
        self.backfill.close()
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
        if self._http_socket is not None:
            self._http_socket.close()
        self.indexing.stop_worker()
        index_set = self.services.model.index_set
        if index_set is not None:
            index_set.save()
        self.services.ingest.close()
        self._leave_cluster()
        self._lock.release()

    def _leave_cluster(self) -> None:
        """Hand back what this process still claims, and leave the registry."""
        if not self.settings.shared_catalog:
            return
        from indexer import queue

        try:
            conn = self.services.connections.get()
            queue.return_claims(conn, [self.registration.id])
            with database.transaction(conn):
                duties.return_claims(conn, [self.registration.id])
        except database.DatabaseError as exc:  # the leader hands them back instead
            log.warning("stopping: claims not handed back (%s)", exc)
        self.registration.close()

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
