"""Reports extracted off the network path, once across the cluster, and caught up at
start-up.

:class:`ReportExtraction` is an :meth:`Ingest.add_listener` listener: on the network
thread it only hands report instances to a one-thread executor, which enqueues a
``report`` duty for each (:mod:`node.storage.duties`). A thread of every ``serve``
process claims those duties (exactly one process takes each), reads and parses the
file, and writes the report to the catalog (:mod:`node.storage.study_reports`).
:func:`catch_up_reports` (run at start-up) processes report instances received after
their study's report row was written, or whose study has none: what a crash between
the store and the extraction left behind, and what a shutdown left in the queue; in a
running node the catch-up enqueues them as duties.

A study has one report: the latest wins (a new SR replaces an older one or an imported
text).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.errors import InvalidDicomError

import database
from database import Connection
from node.errors import ReportError
from node.reporting.report_document import REPORT_SOP_CLASSES, extract_report
from node.storage import StoredInstance, StoreOutcomeValues, ThreadConnections, duties, holdings
from node.storage.study_reports import Report, attach_report, report_instances_to_extract

if TYPE_CHECKING:
    from node.runtime import Services

__all__ = ["ReportExtraction", "catch_up_reports", "install_report_extraction"]

log = logging.getLogger(__name__)

_REPORT = duties.DutyKindValues.REPORT


def _process_file(conn: Connection, data_dir: Path, relpath: str) -> Report | None:
    path = data_dir / relpath
    try:
        ds = pydicom.dcmread(path)
    except (OSError, ValueError, EOFError, InvalidDicomError) as exc:
        raise ReportError(f"{relpath} cannot be read: {exc}") from exc
    report = extract_report(ds)
    if report is not None:
        attach_report(conn, report)
        log.info("report attached study=%s source=%s sop=%s labels=%d chars=%d",
                 report.study_instance_uid, report.source.value, report.sop_instance_uid,
                 len(report.labels), len(report.text))
    return report


def catch_up_reports(conn: Connection, data_dir: Path, *,
                     stop: threading.Event | None = None) -> int:
    """Extract the reports that a crash (or an old version) left out; return how many
    were attached. A report instance is processed when its study has no report row
    written after the instance was received. Once ``stop`` is set, the rest is left
    for the next start."""
    rows = report_instances_to_extract(conn, REPORT_SOP_CLASSES)
    attached = 0
    for sop_instance_uid, relpath in rows:
        if stop is not None and stop.is_set():
            break
        try:
            if _process_file(conn, Path(data_dir), relpath) is not None:
                attached += 1
        except ReportError as exc:
            log.warning("report not extracted sop=%s reason=%s", sop_instance_uid, exc)
    if rows:
        log.info("report catch-up instances=%d attached=%d", len(rows), attached)
    return attached


class ReportExtraction:
    """Extracts reports off the network path through ``report`` duties: :meth:`on_stored`
    only hands the instance on; :meth:`start` runs the thread that claims the duties as
    ``claimer`` (this process's id).

    ``stop`` (the node's) ends the duty thread between two documents; :meth:`close`
    drops what is still queued (a duty claimed but not done goes back; the next start's
    catch-up enqueues what was never enqueued) and waits for the document being read.
    """

    def __init__(self, *, data_dir: Path, catalog: database.Target,
                 stop: threading.Event | None = None, claimer: str = "local",
                 poll_s: float = 0.2) -> None:
        self.data_dir = Path(data_dir)
        self.claimer = claimer
        self.poll_s = poll_s
        self._stop = stop if stop is not None else threading.Event()
        self._connections = ThreadConnections(catalog)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports")
        self._pending: set[Future[Any]] = set()
        self._thread: threading.Thread | None = None

    def on_stored(self, stored: StoredInstance) -> None:
        """The ingest listener: hand a report instance on, nothing more."""
        if stored.sop_class_uid not in REPORT_SOP_CLASSES:
            return
        if stored.outcome is StoreOutcomeValues.DUPLICATE_KEPT:
            return
        self._submit(self._enqueue, [stored.sop_instance_uid], True)

    def catch_up(self) -> Future[Any]:
        """Enqueue the report instances left out before (:func:`catch_up_reports`'s
        choice), on the extraction's executor."""
        def enqueue_left_out() -> None:
            rows = report_instances_to_extract(self._connections.get(), REPORT_SOP_CLASSES)
            if rows:
                log.info("report catch-up instances=%d", len(rows))
                self._enqueue([sop for sop, _ in rows], False)

        return self._submit(enqueue_left_out)

    def _enqueue(self, sop_instance_uids: list[str], reopen: bool) -> None:
        conn = self._connections.get()
        try:
            with database.transaction(conn):
                duties.enqueue(conn, _REPORT, sop_instance_uids, now=time.time(),
                               reopen_claimed=reopen)
        except database.DatabaseError as exc:  # the next start's catch-up enqueues it
            log.warning("report extraction not queued: %s", exc)

    def _submit(self, fn: Callable[..., object], *args: Any) -> Future[Any]:
        future = self._executor.submit(fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def start(self) -> None:
        """Claim and do the ``report`` duties on a thread of their own, until stopped."""
        self._thread = threading.Thread(target=self.run_duties, daemon=True,
                                        name="precedent-reports")
        self._thread.start()

    def run_duties(self) -> None:
        """Claim a few ``report`` duties at a time and extract them, until ``stop``."""
        conn = self._connections.get()
        while not self._stop.is_set():
            try:
                claimed = duties.claim(conn, _REPORT, 8, claimer=self.claimer)
            except database.DatabaseError as exc:  # the catalog away for a moment
                log.warning("report extraction: the duties cannot be read: %s", exc)
                claimed = []
            if not claimed:
                self._stop.wait(self.poll_s)
                continue
            for duty in claimed:
                if self._stop.is_set():
                    duties.release(conn, duty, claimer=self.claimer)
                    continue
                self._extract(conn, duty)

    def _extract(self, conn: Connection, duty: duties.Duty) -> None:
        state, reason = duties.DutyStateValues.DONE, None
        try:
            relpath = holdings.instance_paths(conn, [duty.subject]).get(duty.subject)
            if relpath is not None:  # else deleted since
                _process_file(conn, self.data_dir, relpath)
        except ReportError as exc:
            log.warning("report not extracted sop=%s reason=%s", duty.subject, exc)
            state, reason = duties.DutyStateValues.FAILED, str(exc)
        except Exception as exc:  # the thread must survive any one bad document
            log.exception("report extraction failed sop=%s", duty.subject)
            state, reason = duties.DutyStateValues.FAILED, str(exc)
        try:
            duties.finish(conn, duty, claimer=self.claimer, state=state, reason=reason)
        except database.DatabaseError as exc:  # the leader hands it back if need be
            log.warning("report extraction of sop=%s not recorded: %s", duty.subject, exc)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until every queued extraction has finished (tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            future = next(iter(self._pending), None)
            if future is None:
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            future.result(timeout=left)
        conn = self._connections.get()
        while True:
            c = duties.counts(conn, _REPORT)
            if not c["pending"] and not c["in_progress"]:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("report extraction not idle")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop: queued extractions are dropped (the catch-up at the next start does
        them); the one running finishes."""
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=30.0)


def install_report_extraction(services: Services, *, stop: threading.Event,
                              catch_up: bool = True) -> ReportExtraction:
    """Hook report extraction into ingest (listener), claim the ``report`` duties (the
    returned object's thread: ``start()`` it) and, with ``catch_up``, enqueue what was
    left out before. Call once at start-up; call ``close()`` on the result at shutdown,
    after setting ``stop``."""
    settings = services.settings
    extraction = ReportExtraction(data_dir=settings.node.data_dir, catalog=settings.catalog_target,
                                  stop=stop, claimer=services.process_id or "local")
    services.ingest.add_listener(extraction.on_stored)
    if catch_up:
        extraction.catch_up()
    return extraction
