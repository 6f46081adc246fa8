"""Automatic mode (``[kos] auto_send``): each study that becomes stable is answered with
a KOS of its similar cases, sent to ``[kos] destination``.

Once across the cluster: :func:`install_auto_kos` makes each study marked stable get a
``kos`` duty in the same transaction (:mod:`node.storage.duties`), and runs a thread that
claims those duties (any ``serve`` process may claim one; exactly one does). The KOS's
Series and SOP Instance UIDs are derived from the duty (:func:`kos_uids`: the study, the
model and the event), so a duty done again after its claimer died mid-send makes the
*same* object: one already stored is sent again rather than written anew, and the PACS
keeps it once. Before writing, it waits (at most ``wait_indexed_s``) for
the model and for the study's instances to leave the work queue; every wait also ends
when the node's stop event is set, so shutdown never waits on it. A study whose latest
instance is our own KOS is not answered again (storing the KOS makes the study
unstable once more). Nor is a prior: a study whose instances all came from a backfill
or an imported collection (:func:`node.storage.sources.study_is_prior`). Before the
query, the node's index takes in the vectors other processes wrote
(:meth:`indexer.index.IndexSet.follow_changes`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import database
from database import Connection
from indexer import LevelValues, queue
from node.errors import KosError, NotIndexed, QueryError
from node.key_objects.document import KOS_SOURCE
from node.key_objects.send import destination_named, send_kos
from node.key_objects.write import KosResult, write_similar_cases_kos
from node.retrieval import SimilarQuery
from node.runtime import ModelStatusValues
from node.storage import duties, holdings
from node.storage.sources import study_is_prior

if TYPE_CHECKING:
    from node.runtime import Services
    from node.storage import StabilityMonitor

__all__ = ["AutoKos", "install_auto_kos", "kos_uids"]

log = logging.getLogger(__name__)

#: the namespace of the automatic KOS's derived UIDs
_UID_NAMESPACE = uuid.UUID("5d1c6a0e-8f3b-4c39-9a57-0b7f6c1e2d44")


def kos_uids(study_instance_uid: str, model_id: str, event: float) -> tuple[str, str]:
    """The Series and SOP Instance UIDs of the automatic KOS of a study's stable event
    (``event``: the duty's ``enqueued_at``): ``2.25.`` + a UUID 5 of the three, the same
    in every process."""
    name = f"{study_instance_uid}|{model_id}|{event!r}"

    def uid(part: str) -> str:
        return f"2.25.{uuid.uuid5(_UID_NAMESPACE, f'{part}|{name}').int}"

    return uid("series"), uid("sop")


def _answered_already(conn: Connection, study_uid: str) -> bool:
    """True when our latest KOS of the study is newer than every other instance."""
    ours, theirs = holdings.last_received(conn, study_uid, KOS_SOURCE)
    return theirs is None or (ours is not None and ours >= theirs)


def _waiting(conn: Connection, study_uid: str) -> int:
    """How many of the study's instances are still waiting on the work queue."""
    sops = holdings.sop_instance_uids(conn, study_instance_uid=study_uid)
    return queue.counts(conn, sops).waiting


class AutoKos:
    """The automatic mode: claims the ``kos`` duties (:meth:`run_duties`, on its own
    thread) and answers each study; :meth:`submit` answers one study on a thread of its
    own (no duty).

    ``stop`` ends every wait (model, work queue) at once; :meth:`close` sets it, drops
    what is queued and waits for the study in hand (a duty not done goes back).
    """

    def __init__(self, services: Services, *, destination: str, limit: int,
                 stop: threading.Event, claimer: str, wait_indexed_s: float = 600.0,
                 poll_s: float = 0.5) -> None:
        self.services = services
        self.destination = destination
        self.limit = limit
        self.claimer = claimer
        self.wait_indexed_s = wait_indexed_s
        self.poll_s = poll_s
        self._stop = stop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auto-kos")
        self._thread: threading.Thread | None = None
        self.results: list[KosResult] = []

    def start(self) -> None:
        """Claim and do the ``kos`` duties on a thread of their own, until stopped."""
        self._thread = threading.Thread(target=self.run_duties, daemon=True,
                                        name="precedent-auto-kos")
        self._thread.start()

    def submit(self, study_instance_uid: str) -> Future[KosResult | None]:
        return self._executor.submit(self._run, study_instance_uid)

    def run_duties(self) -> None:
        """Claim one ``kos`` duty at a time and do it, until ``stop``."""
        conn = self.services.connections.get()
        while not self._stop.is_set():
            try:
                claimed = duties.claim(conn, duties.DutyKindValues.KOS, 1,
                                       claimer=self.claimer)
            except database.DatabaseError as exc:  # the catalog away for a moment
                log.warning("automatic KOS: the duties cannot be read: %s", exc)
                claimed = []
            if not claimed:
                self._stop.wait(self.poll_s)
                continue
            self._do(conn, claimed[0])

    def _do(self, conn: Connection, duty: duties.Duty) -> None:
        result = self._run(duty.subject, duty)
        try:
            if result is None and self._stop.is_set():
                duties.release(conn, duty, claimer=self.claimer)  # another does it
            else:
                duties.finish(conn, duty, claimer=self.claimer)
        except database.DatabaseError as exc:  # the leader hands it back if need be
            log.warning("automatic KOS: duty of study=%s not recorded: %s", duty.subject, exc)

    def _run(self, study_uid: str, duty: duties.Duty | None = None) -> KosResult | None:
        try:
            return self._answer(study_uid, duty)
        except (KosError, QueryError) as exc:
            log.warning("automatic KOS not sent study=%s reason=%s", study_uid, exc)
        except Exception:  # the worker thread must survive any one study
            log.exception("automatic KOS failed study=%s", study_uid)
        return None

    def _send_again(self, conn: Connection, study_uid: str, uids: tuple[str, str],
                    path: str) -> KosResult:
        """The duty's KOS was stored before its claimer stopped: send it (again)."""
        target = destination_named(conn, self.destination)
        sent_to = send_kos(self.services.settings.node.data_dir / path, target,
                           calling_ae=self.services.settings.node.ae_title,
                           sop_instance_uid=uids[1], series_instance_uid=uids[0])
        log.info("automatic KOS sent again study=%s sop=%s", study_uid, uids[1])
        result = KosResult(uids[1], uids[0], study_uid, sent_to, ())
        self.results.append(result)
        return result

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

    def _prior(self, conn: Connection, study_uid: str) -> bool:
        if study_is_prior(conn, study_uid, ignore_sources=[KOS_SOURCE]):
            log.debug("automatic KOS skipped study=%s (a prior: backfilled)", study_uid)
            return True
        return False

    def _answer(self, study_uid: str, duty: duties.Duty | None) -> KosResult | None:
        conn = self.services.connections.get()
        uids: tuple[str, str] | None = None
        if duty is not None:
            deadline = time.monotonic() + self.wait_indexed_s
            if not self._wait_model(deadline):
                return None
            embedder, _ = self.services.model.require()
            uids = kos_uids(study_uid, embedder.identity, duty.enqueued_at)
            stored = holdings.instance_paths(conn, [uids[1]])
            if uids[1] in stored:
                return self._send_again(conn, study_uid, uids, stored[uids[1]])
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
        # the vectors other processes wrote (PostgreSQL), in this node's index now
        self.services.model.require()[1].follow_changes()
        query = SimilarQuery(level=LevelValues.STUDY, limit=self.limit)
        try:
            result = write_similar_cases_kos(self.services, study_uid, query,
                                             destination=self.destination, uids=uids)
        except NotIndexed as exc:
            log.info("automatic KOS not written study=%s reason=%s", study_uid, exc)
            return None
        self.results.append(result)
        return result

    def close(self) -> None:
        """Set ``stop``, drop the queued studies and wait for the one in hand."""
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=30.0)


def install_auto_kos(services: Services, monitor: StabilityMonitor, *,
                     stop: threading.Event, claimer: str) -> AutoKos | None:
    """When ``[kos] auto_send`` is on, answer each stable study with a KOS sent to
    ``[kos] destination``: each study the monitor marks stable gets a ``kos`` duty, and
    the returned :class:`AutoKos` (``start()`` it; ``close()`` it at shutdown) claims
    them as ``claimer`` (this process's id). ``None`` when the mode is off."""
    kos = services.settings.kos
    if not kos.auto_send:
        return None
    if not kos.destination:
        log.error("kos.auto_send is on but kos.destination is not set: no KOS will be sent")
        return None
    auto = AutoKos(services, destination=kos.destination, limit=kos.limit, stop=stop,
                   claimer=claimer)
    monitor.add_follow_up(duties.DutyKindValues.KOS)
    log.info("automatic KOS on destination=%s limit=%d", kos.destination, kos.limit)
    return auto
