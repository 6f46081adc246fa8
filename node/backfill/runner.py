"""One backfill at work: ``concurrency`` worker threads, each holding at most one session
(association) with the PACS, taking windows to query and studies to pull from the plan.

Before each study a worker checks, in this order, and waits (saying why in the plan's
``note``, which ``backfill status`` shows) when:

- the node's local time is outside the backfill's window (``--window``);
- free disk space is below the node's reserve (``[node] free_space_reserve_mb``);
- the PACS could not be reached lately (backoff: ``retry_initial_s``, doubling up to
  ``retry_max_s``; no attempt is counted against the studies);
- the rate (``--rate``) says the next study may not start yet.

A study that falls short is retried after a backoff, only what is missing; after
``max_attempts`` it is ``failed`` with its reason. Every wait honours the node's stop
event and the runner's halt (pause, cancel); :meth:`JobRunner.abort` ends the PACS
sessions at once when the node stops (what was in hand is pending again at the next
start).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from database import Connection, ThreadConnections
from node.backfill import plan
from node.backfill.limits import Clock, RateLimit
from node.backfill.pacs import CappedAnswer, Pacs, PacsError, PacsSession, PacsUnavailable
from node.backfill.plan import Job, PlannedStudy, PlannedWindow
from node.backfill.states import JobStateValues, PlanStateValues, RetrieveModeValues
from node.backfill.study_pull import pull_study
from node.settings import BackfillSettings
from node.storage.files import free_bytes
from node.storage.sources import backfill_source, mark_backfilled

__all__ = ["FreeBytes", "JobRunner"]

log = logging.getLogger(__name__)

#: free bytes on the file system of a folder (injected in tests)
FreeBytes = Callable[..., int]
#: a session idle longer than this is closed rather than kept (the PACS's timeouts)
_KEEP_SESSION_S = 2.0
#: the longest single wait slice (halt and stop are looked at in between)
_SLICE_S = 0.25


class JobRunner:
    """The worker threads of backfill ``job`` (see the module docstring)."""

    def __init__(self, job: Job, *, connections: ThreadConnections, pacs: Pacs,
                 settings: BackfillSettings, data_dir: object, reserve_bytes: int,
                 stop: threading.Event, clock: Clock, free: FreeBytes = free_bytes) -> None:
        self.job = job
        self._connections = connections
        self._pacs = pacs
        self._settings = settings
        self._data_dir = data_dir
        self._reserve = reserve_bytes
        self._stop = stop
        self._clock = clock
        self._free = free
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sessions: set[PacsSession] = set()
        self._note: str | None = job.note
        self._pacs_held_until = 0.0
        self._pacs_backoff = settings.retry_initial_s
        self._source = backfill_source(job.id)
        self._rate = RateLimit(job.rate, last_start=plan.last_start(connections.get(), job.id))

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Run (again): as many live workers as the backfill's concurrency."""
        with self._lock:
            self._halt.clear()
            self._threads = [t for t in self._threads if t.is_alive()]
            for n in range(len(self._threads), self.job.concurrency):
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"precedent-backfill-{self.job.id}-{n}")
                thread.start()
                self._threads.append(thread)

    def halt(self) -> None:
        """Pause or cancel: each worker finishes the study in hand and stops."""
        self._halt.set()

    def abort(self) -> None:
        """The node stops: end every PACS session now."""
        self._halt.set()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.abort()

    def join(self, timeout: float) -> bool:
        """Wait for the workers; ``True`` when all have ended."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self.alive

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- waiting -------------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._halt.is_set()

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds``; ``True`` when told to stop meanwhile."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self._stopping():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(left, _SLICE_S))
        return True

    def _set_note(self, conn: Connection, note: str | None) -> None:
        with self._lock:
            if note == self._note:
                return
            self._note = note
        plan.set_note(conn, self.job.id, note)
        if note:
            log.info("backfill held job=%d reason=%s", self.job.id, note)

    def _hold(self) -> tuple[str | None, float]:
        """Why no study may start now, and how long to wait before looking again."""
        poll = self._settings.poll_s
        window = self.job.window
        if window is not None:
            now = self._clock()
            if not window.contains(now):
                opens = window.opens_in(now)
                return (f"outside its window {window}: it starts studies again at "
                        f"{window.opening}", min(poll, opens))
        free = self._free(self._data_dir)
        if free < self._reserve:
            return (f"paused: free disk space ({free // 2**20} MiB) is below the node's "
                    f"reserve ({self._reserve // 2**20} MiB); it goes on once space is freed",
                    poll)
        with self._lock:
            left = self._pacs_held_until - time.monotonic()
            if left > 0:
                return self._note or "waiting for the PACS", min(poll, left)
        return None, 0.0

    def _pacs_down(self, reason: str) -> str:
        with self._lock:
            delay = self._pacs_backoff
            self._pacs_backoff = min(self._settings.retry_max_s, delay * 2)
            self._pacs_held_until = time.monotonic() + delay
        return f"the PACS cannot be reached ({reason}); trying again in {delay:.0f} s"

    def _pacs_up(self) -> None:
        with self._lock:
            self._pacs_backoff = self._settings.retry_initial_s
            self._pacs_held_until = 0.0

    def _retry_at(self, attempts: int) -> float | None:
        """When an item that failed ``attempts`` times is tried again (``None``: never)."""
        if attempts >= self._settings.max_attempts:
            return None
        delay = min(self._settings.retry_max_s,
                    self._settings.retry_initial_s * 2.0 ** (attempts - 1))
        return time.time() + delay

    # -- sessions ------------------------------------------------------------------------

    def _open(self, session: PacsSession | None) -> PacsSession:
        if session is not None:
            return session
        opened = self._pacs.open()
        with self._lock:
            self._sessions.add(opened)
        return opened

    def _close(self, session: PacsSession | None, *, abort: bool = False) -> None:
        if session is None:
            return
        with self._lock:
            self._sessions.discard(session)
        if abort:
            session.abort()
        else:
            session.close()

    # -- the worker ----------------------------------------------------------------------

    def _work(self) -> None:
        conn = self._connections.get()
        session: PacsSession | None = None
        try:
            while not self._stopping():
                note, wait = self._hold()
                if note is not None:
                    self._set_note(conn, note)
                    self._close(session)
                    session = None
                    self._wait(wait)
                    continue
                window = plan.claim_window(conn, self.job.id, time.time())
                if window is not None:
                    session = self._query(conn, session, window)
                    continue
                booked = self._rate.reserve()
                delay = booked - time.monotonic()
                if delay > _KEEP_SESSION_S:
                    self._close(session)
                    session = None
                if self._wait(delay) or self._hold()[0] is not None:
                    self._rate.give_back(booked)
                    continue
                study = plan.claim_study(conn, self.job.id, time.time(),
                                         self._clock().strftime("%Y-%m-%d %H:%M:%S"))
                if study is None:
                    self._rate.give_back(booked)
                    if self._idle(conn):
                        break
                    continue
                session = self._pull(conn, session, study)
        finally:
            self._close(session)
            self._connections.close()  # this thread's catalog connection

    def _idle(self, conn: Connection) -> bool:
        """Nothing to take now: finish the backfill when nothing is left (``True``), else
        wait for the next retry or for the other workers."""
        if plan.open_items(conn, self.job.id) == 0:
            if plan.set_job_state(conn, self.job.id, JobStateValues.DONE,
                                  only_from=[JobStateValues.RUNNING]):
                log.info("backfill done job=%d", self.job.id)
            return True
        due = plan.next_due(conn, self.job.id)
        if due is not None and due > time.time():
            self._set_note(conn, "waiting to retry what fell short; next try at "
                           + time.strftime("%H:%M:%S", time.localtime(due)))
            self._wait(min(self._settings.poll_s, due - time.time()))
        else:
            self._wait(min(self._settings.poll_s, 0.5))
        return False

    def _query(self, conn: Connection, session: PacsSession | None,
               window: PlannedWindow) -> PacsSession | None:
        try:
            session = self._open(session)
            studies = session.find_studies(window.window, self.job.modalities)
            limit = self._settings.answer_limit
            if limit and len(studies) >= limit:
                raise CappedAnswer(studies, f"{len(studies)} answers, [backfill] "
                                   f"answer_limit {limit}")
        except PacsUnavailable as exc:
            plan.release_window(conn, window, str(exc))
            if not self._stopping():
                self._set_note(conn, self._pacs_down(str(exc)))
            self._close(session, abort=True)
            return None
        except CappedAnswer as exc:
            parts = window.window.split()
            if parts is None:
                plan.retry_window(
                    conn, window, f"the PACS answers at most {len(exc.matches)} studies and "
                    f"{window.window} has more: raise its limit (Orthanc: LimitFindResults)",
                    not_before=None,
                    studies=[s for s in exc.matches if s.has_any(self.job.modalities)])
            else:
                plan.split_window(conn, window, parts,
                                  [s for s in exc.matches if s.has_any(self.job.modalities)])
                log.info("backfill window split job=%d window=%s", self.job.id, window.window)
            return session
        except PacsError as exc:
            plan.retry_window(conn, window, str(exc), not_before=self._retry_at(window.attempts))
            return session
        except Exception as exc:  # a worker thread must survive any one window
            log.exception("backfill window failed job=%d window=%s", self.job.id,
                          window.window)
            plan.retry_window(conn, window, f"internal error: {type(exc).__name__}",
                              not_before=self._retry_at(window.attempts))
            return session
        self._pacs_up()
        self._set_note(conn, None)
        studies = [s for s in studies if s.has_any(self.job.modalities)]
        plan.finish_window(conn, window, studies)
        log.info("backfill window job=%d window=%s studies=%d", self.job.id, window.window,
                 len(studies))
        return session

    def _pull(self, conn: Connection, session: PacsSession | None,
              study: PlannedStudy) -> PacsSession | None:
        def retrieving(series: Sequence[str] | None) -> None:
            if self.job.retrieve is RetrieveModeValues.MOVE:  # arrived under the PACS's AET
                mark_backfilled(conn, study_instance_uid=study.study_instance_uid,
                                series_instance_uids=series, since=study.started_at,
                                source=self._source)

        try:
            session = self._open(session)
            outcome = pull_study(session, conn, study_instance_uid=study.study_instance_uid,
                                 remote_instances=study.remote_instances,
                                 modalities=self.job.modalities, retrieving=retrieving,
                                 remote_modalities=study.modalities,
                                 retry=study.attempts > 1)
        except PacsUnavailable as exc:
            plan.release_study(conn, study, str(exc))
            if not self._stopping():
                self._set_note(conn, self._pacs_down(str(exc)))
            self._close(session, abort=True)
            return None
        except PacsError as exc:
            plan.retry_study(conn, study, str(exc), not_before=self._retry_at(study.attempts))
            return session
        except Exception as exc:  # a worker thread must survive any one study
            log.exception("backfill study failed job=%d study=%s", self.job.id,
                          study.study_instance_uid)
            plan.retry_study(conn, study, f"internal error: {type(exc).__name__}",
                             not_before=self._retry_at(study.attempts))
            return session
        self._pacs_up()
        self._set_note(conn, None)
        if outcome.state is PlanStateValues.DONE:
            plan.finish_study(conn, study, PlanStateValues.DONE, wanted=outcome.wanted,
                              received=outcome.received)
        else:
            plan.retry_study(conn, study, outcome.reason or "incomplete",
                             not_before=self._retry_at(study.attempts),
                             wanted=outcome.wanted, received=outcome.received)
        log.info("backfill study job=%d study=%s state=%s received=%d attempt=%d",
                 self.job.id, study.study_instance_uid, outcome.state.value,
                 outcome.received, study.attempts)
        return session
