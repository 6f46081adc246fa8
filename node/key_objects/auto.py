"""Automatic mode (``[kos] auto_send``): each study that becomes stable is answered with
a KOS of its similar cases, sent to ``[kos] destination``.

:func:`install_auto_kos` adds a study-stable listener that only enqueues; the work runs
on the listener's own thread. Before writing, it waits (at most ``wait_indexed_s``) for
the model and for the study's instances to leave the work queue; every wait also ends
when the node's stop event is set, so shutdown never waits on it. A study whose latest
instance is our own KOS is not answered again (storing the KOS makes the study
unstable once more). Nor is a prior: a study whose instances all came from a backfill
or an imported collection (:func:`node.storage.sources.study_is_prior`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from indexer import LevelValues, queue
from node.errors import KosError, NotIndexed, QueryError
from node.key_objects.document import KOS_SOURCE
from node.key_objects.write import KosResult, write_similar_cases_kos
from node.retrieval import SimilarQuery
from node.runtime import ModelStatusValues
from node.storage import holdings
from node.storage.sources import study_is_prior

if TYPE_CHECKING:
    from node.runtime import Services
    from node.storage import StabilityMonitor

__all__ = ["AutoKos", "install_auto_kos"]

log = logging.getLogger(__name__)


def _answered_already(conn: sqlite3.Connection, study_uid: str) -> bool:
    """True when our latest KOS of the study is newer than every other instance."""
    ours, theirs = holdings.last_received(conn, study_uid, KOS_SOURCE)
    return theirs is None or (ours is not None and ours >= theirs)


def _waiting(conn: sqlite3.Connection, study_uid: str) -> int:
    """How many of the study's instances are still waiting on the work queue."""
    sops = holdings.sop_instance_uids(conn, study_instance_uid=study_uid)
    return queue.counts(conn, sops).waiting


class AutoKos:
    """The study-stable listener of the automatic mode: work happens on its own thread.

    ``stop`` ends every wait (model, work queue) at once; :meth:`close` sets it, drops
    what is queued and waits for the study in hand.
    """

    def __init__(self, services: Services, *, destination: str, limit: int,
                 stop: threading.Event, wait_indexed_s: float = 600.0,
                 poll_s: float = 0.5) -> None:
        self.services = services
        self.destination = destination
        self.limit = limit
        self.wait_indexed_s = wait_indexed_s
        self.poll_s = poll_s
        self._stop = stop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auto-kos")
        self.results: list[KosResult] = []

    def on_stable(self, study_instance_uid: str) -> None:
        """The listener: only enqueues."""
        if not self._stop.is_set():
            self._executor.submit(self._run, study_instance_uid)

    def submit(self, study_instance_uid: str) -> Future[KosResult | None]:
        return self._executor.submit(self._run, study_instance_uid)

    def _run(self, study_uid: str) -> KosResult | None:
        try:
            return self._answer(study_uid)
        except (KosError, QueryError) as exc:
            log.warning("automatic KOS not sent study=%s reason=%s", study_uid, exc)
        except Exception:  # the worker thread must survive any one study
            log.exception("automatic KOS failed study=%s", study_uid)
        return None

    def _wait_model(self, deadline: float) -> bool:
        """Wait for the model; ``False`` when stopped first. Raises :class:`KosError`
        when it cannot load or has not loaded by ``deadline``."""
        model = self.services.model
        while not model.ready.is_set():
            if model.status is ModelStatusValues.UNAVAILABLE:
                raise KosError(f"the model is not loaded: {model.reason}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise KosError("the model is not loaded")
            if self._stop.wait(min(self.poll_s, left)):
                return False
        return True

    def _prior(self, conn: sqlite3.Connection, study_uid: str) -> bool:
        if study_is_prior(conn, study_uid, ignore_sources=[KOS_SOURCE]):
            log.debug("automatic KOS skipped study=%s (a prior: backfilled)", study_uid)
            return True
        return False

    def _answer(self, study_uid: str) -> KosResult | None:
        conn = self.services.connections.get()
        if _answered_already(conn, study_uid):
            log.debug("automatic KOS skipped study=%s (answered already)", study_uid)
            return None
        if self._prior(conn, study_uid):
            return None
        deadline = time.monotonic() + self.wait_indexed_s
        if not self._wait_model(deadline):
            return None
        while _waiting(conn, study_uid) and time.monotonic() < deadline:
            if self._stop.wait(self.poll_s):
                return None
        if self._stop.is_set():
            return None
        if self._prior(conn, study_uid):  # again: a C-MOVE's instances are marked after it
            return None
        query = SimilarQuery(level=LevelValues.STUDY, limit=self.limit)
        try:
            result = write_similar_cases_kos(self.services, study_uid, query,
                                             destination=self.destination)
        except NotIndexed as exc:
            log.info("automatic KOS not written study=%s reason=%s", study_uid, exc)
            return None
        self.results.append(result)
        return result

    def close(self) -> None:
        """Set ``stop``, drop the queued studies and wait for the one in hand."""
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


def install_auto_kos(services: Services, monitor: StabilityMonitor, *,
                     stop: threading.Event) -> AutoKos | None:
    """When ``[kos] auto_send`` is on, answer each stable study with a KOS sent to
    ``[kos] destination``. Returns the listener (``close()`` it at shutdown), or ``None``
    when the mode is off."""
    kos = services.settings.kos
    if not kos.auto_send:
        return None
    if not kos.destination:
        log.error("kos.auto_send is on but kos.destination is not set: no KOS will be sent")
        return None
    auto = AutoKos(services, destination=kos.destination, limit=kos.limit, stop=stop)
    monitor.add_listener(auto.on_stable)
    log.info("automatic KOS on destination=%s limit=%d", kos.destination, kos.limit)
    return auto
