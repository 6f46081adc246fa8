"""Reports extracted at ingest, off the network path, and caught up at start-up.

:class:`ReportExtraction` is an :meth:`Ingest.add_listener` listener: on the network
thread it only puts report instances on a one-thread executor; the file is read and
parsed there, and the report written to the catalog (:mod:`node.storage.study_reports`).
:func:`catch_up_reports` (run at start-up) processes report instances received after
their study's report row was written, or whose study has none: what a crash between
the store and the extraction left behind, and what a shutdown left in the queue.

A study has one report: the latest wins (a new SR replaces an older one or an imported
text).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.errors import InvalidDicomError

import database
from node.errors import ReportError
from node.reporting.report_document import REPORT_SOP_CLASSES, extract_report
from node.storage import StoredInstance, StoreOutcomeValues, ThreadConnections
from node.storage.study_reports import Report, attach_report, report_instances_to_extract

if TYPE_CHECKING:
    from node.runtime import Services

__all__ = ["ReportExtraction", "catch_up_reports", "install_report_extraction"]

log = logging.getLogger(__name__)


def _process_file(conn: sqlite3.Connection, data_dir: Path, relpath: str) -> Report | None:
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


def catch_up_reports(conn: sqlite3.Connection, data_dir: Path, *,
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
    """Extracts reports off the network path: :meth:`on_stored` only enqueues.

    ``stop`` (the node's) ends the catch-up between two documents; :meth:`close` drops
    what is still queued (the next start's catch-up does it) and waits for the document
    being read.
    """

    def __init__(self, *, data_dir: Path, catalog: database.Target,
                 stop: threading.Event | None = None) -> None:
        self.data_dir = Path(data_dir)
        self._stop = stop if stop is not None else threading.Event()
        self._connections = ThreadConnections(catalog)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports")
        self._pending: set[Future[Any]] = set()

    def on_stored(self, stored: StoredInstance) -> None:
        """The ingest listener: queue a report instance for extraction, nothing more."""
        if stored.sop_class_uid not in REPORT_SOP_CLASSES:
            return
        if stored.outcome is StoreOutcomeValues.DUPLICATE_KEPT:
            return
        self._submit(self._extract, stored.sop_instance_uid, stored.path)

    def catch_up(self) -> Future[Any]:
        """Run :func:`catch_up_reports` on the extraction thread."""
        return self._submit(lambda: catch_up_reports(self._connections.get(), self.data_dir,
                                                     stop=self._stop))

    def _submit(self, fn: Callable[..., object], *args: Any) -> Future[Any]:
        future = self._executor.submit(fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def _extract(self, sop_instance_uid: str, relpath: str) -> None:
        try:
            _process_file(self._connections.get(), self.data_dir, relpath)
        except ReportError as exc:
            log.warning("report not extracted sop=%s reason=%s", sop_instance_uid, exc)
        except Exception:  # the executor thread must survive any one bad document
            log.exception("report extraction failed sop=%s", sop_instance_uid)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until every queued extraction has finished (tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            future = next(iter(self._pending), None)
            if future is None:
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            future.result(timeout=left)

    def close(self) -> None:
        """Stop: queued extractions are dropped (the catch-up at the next start does
        them); the one running finishes."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def install_report_extraction(services: Services, *, stop: threading.Event,
                              catch_up: bool = True) -> ReportExtraction:
    """Hook report extraction into ingest (listener) and, with ``catch_up``, process
    what was left out before (in the background). Call once at start-up; call
    ``close()`` on the result at shutdown, after setting ``stop``."""
    settings = services.settings
    extraction = ReportExtraction(data_dir=settings.node.data_dir, catalog=settings.catalog_target,
                                  stop=stop)
    services.ingest.add_listener(extraction.on_stored)
    if catch_up:
        extraction.catch_up()
    return extraction
