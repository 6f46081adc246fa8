"""The backfill plan in the catalog: each backfill (``backfill_jobs``), its date windows
(``backfill_windows``) and the studies they found (``backfill_studies``), each window and
study ``pending`` / ``moving`` / ``done`` / ``partial`` / ``failed`` with a reason.

This module (with :mod:`node.backfill.progress`, which only reads) is the tables' one
owner. Every change of state is one transaction, so a SIGKILL leaves the plan as it was
before or after it; :func:`reset_moving` puts what was in hand back to pending at start.
Every write to the three tables is here, a little over the house's ~350 lines, so that
the plan's states and their transitions read in one place.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from database import Connection, retrying
from node.backfill.limits import TimeWindow
from node.backfill.pacs import DateWindow, RemoteStudy
from node.backfill.request import BackfillRequest, ViaValues, date_windows
from node.backfill.states import JobStateValues, PlanStateValues, RetrieveModeValues

__all__ = [
    "Job",
    "PlannedStudy",
    "PlannedWindow",
    "claim_study",
    "claim_window",
    "create_job",
    "finish_study",
    "finish_window",
    "get_job",
    "last_start",
    "list_jobs",
    "next_due",
    "open_items",
    "release_study",
    "release_window",
    "reset_moving",
    "retry_failed",
    "retry_study",
    "retry_window",
    "set_job_state",
    "set_note",
    "split_window",
]

_P = PlanStateValues


@dataclass(frozen=True, slots=True)
class Job:
    """One backfill as the plan keeps it."""

    id: int
    source: str
    via: ViaValues
    retrieve: RetrieveModeValues
    since: str
    until: str
    modalities: tuple[str, ...]
    window: TimeWindow | None
    rate: float | None
    concurrency: int
    state: JobStateValues
    note: str | None
    created_at: float
    updated_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    job_id: int
    window: DateWindow
    attempts: int


@dataclass(frozen=True, slots=True)
class PlannedStudy:
    job_id: int
    study_instance_uid: str
    study_date: str | None
    remote_instances: int | None
    attempts: int
    started_at: float
    #: Modalities in Study as the PACS answered (empty: it did not say)
    modalities: tuple[str, ...] = ()


def _job(r: Any) -> Job:
    return Job(
        id=int(r["id"]), source=r["source"], via=ViaValues(r["via"]),
        retrieve=RetrieveModeValues(r["retrieve"]), since=r["since"], until=r["until"],
        modalities=tuple(m for m in (r["modalities"] or "").split(",") if m),
        window=TimeWindow.parse(r["time_window"]) if r["time_window"] else None,
        rate=r["rate"], concurrency=int(r["concurrency"]), state=JobStateValues(r["state"]),
        note=r["note"], created_at=r["created_at"], updated_at=r["updated_at"],
        finished_at=r["finished_at"],
    )


def _day(text: date) -> str:
    return text.strftime("%Y%m%d")


def create_job(conn: Connection, request: BackfillRequest, *, retrieve: RetrieveModeValues,
               window_days: int) -> Job:
    """Record a new running backfill and its date windows (newest first), in one
    transaction."""
    now = time.time()

    def work(conn: Connection) -> int:
        cursor = conn.execute(
            """INSERT INTO backfill_jobs (source, via, retrieve, since, until, modalities,
                   time_window, rate, concurrency, state, created_at, updated_at)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id""",
            (request.source, request.via.value, retrieve.value, _day(request.since),
             _day(request.until), ",".join(request.modalities),
             str(request.window) if request.window else None, request.rate,
             request.concurrency, JobStateValues.RUNNING.value, now, now))
        job_id = int(cursor.fetchone()[0])
        conn.executemany(
            """INSERT INTO backfill_windows (job_id, date_from, date_to, state, updated_at)
               VALUES (?,?,?,?,?)""",
            [(job_id, _day(start), _day(end), _P.PENDING.value, now)
             for start, end in date_windows(request.since, request.until, window_days)])
        return job_id

    job = get_job(conn, retrying(conn, work))
    assert job is not None
    return job


def get_job(conn: Connection, job_id: int) -> Job | None:
    row = conn.execute("SELECT * FROM backfill_jobs WHERE id = ?", (job_id,)).fetchone()
    return _job(row) if row is not None else None


def list_jobs(conn: Connection, *, states: Iterable[JobStateValues] | None = None
              ) -> list[Job]:
    """Every backfill (newest first), or those in ``states``."""
    rows = conn.execute("SELECT * FROM backfill_jobs ORDER BY id DESC").fetchall()
    wanted = set(states) if states is not None else None
    jobs = [_job(r) for r in rows]
    return [j for j in jobs if wanted is None or j.state in wanted]


def set_job_state(conn: Connection, job_id: int, state: JobStateValues, *,
                  only_from: Iterable[JobStateValues] | None = None) -> bool:
    """Move the backfill to ``state`` (only from ``only_from`` when given); ``False`` when
    it was in another state."""
    now = time.time()
    sql = "UPDATE backfill_jobs SET state = ?, updated_at = ?, finished_at = ?"
    params: list[object] = [state.value, now, now if state.final else None]
    if state is not JobStateValues.RUNNING:
        sql += ", note = NULL"
    sql += " WHERE id = ?"
    params.append(job_id)
    if only_from is not None:
        allowed = [s.value for s in only_from]
        sql += f" AND state IN ({','.join('?' * len(allowed))})"
        params += allowed
    return int(conn.execute(sql, params).rowcount) > 0


def set_note(conn: Connection, job_id: int, note: str | None) -> None:
    """Why a running backfill waits (``None``: it does not)."""
    conn.execute("UPDATE backfill_jobs SET note = ?, updated_at = ? WHERE id = ?",
                 (note, time.time(), job_id))


# ------------------------------------------------------------------ windows


def claim_window(conn: Connection, job_id: int, now: float) -> PlannedWindow | None:
    """The newest pending window that is due, now ``moving`` (being queried)."""

    def work(conn: Connection) -> PlannedWindow | None:
        row = conn.execute(
            """SELECT date_from, date_to, time_from, time_to, attempts FROM backfill_windows
               WHERE job_id = ? AND state = ? AND not_before <= ?
               ORDER BY date_to DESC, time_to DESC LIMIT 1""",
            (job_id, _P.PENDING.value, now)).fetchone()
        if row is None:
            return None
        conn.execute(
            """UPDATE backfill_windows SET state = ?, attempts = attempts + 1, updated_at = ?
               WHERE job_id = ? AND date_from = ? AND date_to = ? AND time_from = ?
                 AND time_to = ?""",
            (_P.MOVING.value, now, job_id, row[0], row[1], row[2], row[3]))
        return PlannedWindow(job_id, DateWindow(row[0], row[1], row[2], row[3]),
                             int(row[4]) + 1)

    return retrying(conn, work)


def _window_key(w: PlannedWindow) -> tuple[int, str, str, str, str]:
    d = w.window
    return (w.job_id, d.date_from, d.date_to, d.time_from, d.time_to)


_WHERE_WINDOW = ("WHERE job_id = ? AND date_from = ? AND date_to = ? AND time_from = ? "
                 "AND time_to = ?")


def _add_studies(conn: Connection, job_id: int, studies: Iterable[RemoteStudy],
                 now: float) -> None:
    conn.executemany(
        """INSERT INTO backfill_studies (job_id, study_instance_uid, study_date,
               remote_instances, modalities, state, updated_at) VALUES (?,?,?,?,?,?,?)
           ON CONFLICT (job_id, study_instance_uid) DO NOTHING""",
        [(job_id, s.study_instance_uid, s.study_date, s.instances, "\\".join(s.modalities),
          _P.PENDING.value, now) for s in studies])


def finish_window(conn: Connection, window: PlannedWindow,
                  studies: list[RemoteStudy]) -> None:
    """The window was answered in full: its studies join the plan, it is done."""
    now = time.time()

    def work(conn: Connection) -> None:
        _add_studies(conn, window.job_id, studies, now)
        conn.execute(f"UPDATE backfill_windows SET state = ?, reason = NULL, studies = ?, "
                     f"updated_at = ? {_WHERE_WINDOW}",
                     (_P.DONE.value, len(studies), now, *_window_key(window)))

    retrying(conn, work)


def split_window(conn: Connection, window: PlannedWindow, parts: list[DateWindow],
                 studies: list[RemoteStudy]) -> None:
    """The PACS capped its answer: what it answered joins the plan, the window gives way
    to ``parts`` (pending)."""
    now = time.time()

    def work(conn: Connection) -> None:
        _add_studies(conn, window.job_id, studies, now)
        conn.execute(f"DELETE FROM backfill_windows {_WHERE_WINDOW}", _window_key(window))
        conn.executemany(
            """INSERT INTO backfill_windows (job_id, date_from, date_to, time_from, time_to,
                   state, updated_at) VALUES (?,?,?,?,?,?,?)
               ON CONFLICT DO NOTHING""",
            [(window.job_id, p.date_from, p.date_to, p.time_from, p.time_to,
              _P.PENDING.value, now) for p in parts])

    retrying(conn, work)


def retry_window(conn: Connection, window: PlannedWindow, reason: str, *,
                 not_before: float | None, studies: list[RemoteStudy] | None = None) -> None:
    """The query failed: pending again after ``not_before``, or failed (``None``)."""
    now = time.time()
    state = _P.FAILED if not_before is None else _P.PENDING

    def work(conn: Connection) -> None:
        if studies:
            _add_studies(conn, window.job_id, studies, now)
        conn.execute(f"UPDATE backfill_windows SET state = ?, reason = ?, not_before = ?, "
                     f"updated_at = ? {_WHERE_WINDOW}",
                     (state.value, reason, not_before or 0, now, *_window_key(window)))

    retrying(conn, work)


def release_window(conn: Connection, window: PlannedWindow, reason: str) -> None:
    """The PACS could not be reached: pending again, the attempt not counted."""
    conn.execute(f"UPDATE backfill_windows SET state = ?, reason = ?, attempts = attempts - 1,"
                 f" updated_at = ? {_WHERE_WINDOW}",
                 (_P.PENDING.value, reason, time.time(), *_window_key(window)))


# ------------------------------------------------------------------ studies


def claim_study(conn: Connection, job_id: int, now: float, local: str) -> PlannedStudy | None:
    """The newest pending or partial study that is due, now ``moving``; its start is
    recorded (``started_at``, and ``local``: the node's local time, for the window)."""

    def work(conn: Connection) -> PlannedStudy | None:
        row = conn.execute(
            """SELECT study_instance_uid, study_date, remote_instances, attempts, modalities
               FROM backfill_studies
               WHERE job_id = ? AND state IN (?, ?) AND not_before <= ?
               ORDER BY study_date DESC, study_instance_uid LIMIT 1""",
            (job_id, _P.PENDING.value, _P.PARTIAL.value, now)).fetchone()
        if row is None:
            return None
        conn.execute(
            """UPDATE backfill_studies SET state = ?, attempts = attempts + 1, started_at = ?,
                   started_local = ?, updated_at = ?
               WHERE job_id = ? AND study_instance_uid = ?""",
            (_P.MOVING.value, now, local, now, job_id, row[0]))
        return PlannedStudy(job_id, str(row[0]), row[1], row[2], int(row[3]) + 1, now,
                            tuple(m for m in (row[4] or "").split("\\") if m))

    return retrying(conn, work)


def finish_study(conn: Connection, study: PlannedStudy, state: PlanStateValues, *,
                 wanted: int | None, received: int, reason: str | None = None) -> None:
    """``done`` (every wanted instance held) or ``partial``/``failed`` with the reason."""
    now = time.time()
    conn.execute(
        """UPDATE backfill_studies SET state = ?, reason = ?, wanted = ?, received = ?,
               finished_at = ?, updated_at = ? WHERE job_id = ? AND study_instance_uid = ?""",
        (state.value, reason, wanted, received, now, now, study.job_id,
         study.study_instance_uid))


def retry_study(conn: Connection, study: PlannedStudy, reason: str, *,
                not_before: float | None, state: PlanStateValues = _P.PARTIAL,
                wanted: int | None = None, received: int | None = None) -> None:
    """The attempt fell short: ``state`` again after ``not_before``, or ``failed``."""
    now = time.time()
    final = _P.FAILED if not_before is None else state
    conn.execute(
        """UPDATE backfill_studies SET state = ?, reason = ?, not_before = ?,
               wanted = coalesce(?, wanted), received = coalesce(?, received),
               finished_at = ?, updated_at = ? WHERE job_id = ? AND study_instance_uid = ?""",
        (final.value, reason, not_before or 0, wanted, received,
         now if final is _P.FAILED else None, now, study.job_id, study.study_instance_uid))


def release_study(conn: Connection, study: PlannedStudy, reason: str) -> None:
    """The PACS could not be reached: back to pending, the attempt not counted."""
    conn.execute(
        """UPDATE backfill_studies SET state = ?, reason = ?, attempts = attempts - 1,
               updated_at = ? WHERE job_id = ? AND study_instance_uid = ?""",
        (_P.PENDING.value, reason, time.time(), study.job_id, study.study_instance_uid))


# ------------------------------------------------------------------ the whole plan


def open_items(conn: Connection, job_id: int) -> int:
    """Windows and studies not yet done or failed."""
    open_states = [s.value for s in PlanStateValues if s.open]
    marks = ",".join("?" * len(open_states))
    total = 0
    for table in ("backfill_windows", "backfill_studies"):
        total += int(conn.execute(
            f"SELECT count(*) FROM {table} WHERE job_id = ? AND state IN ({marks})",
            (job_id, *open_states)).fetchone()[0])
    return total


def next_due(conn: Connection, job_id: int) -> float | None:
    """When the next pending or partial window or study may be tried (unix seconds)."""
    due = []
    for table, states in (("backfill_windows", (_P.PENDING.value,)),
                          ("backfill_studies", (_P.PENDING.value, _P.PARTIAL.value))):
        row = conn.execute(
            f"SELECT min(not_before) FROM {table} WHERE job_id = ? AND state IN "
            f"({','.join('?' * len(states))})", (job_id, *states)).fetchone()
        if row[0] is not None:
            due.append(float(row[0]))
    return min(due) if due else None


def last_start(conn: Connection, job_id: int) -> float | None:
    """When the backfill last started a study (its rate continues from there)."""
    row = conn.execute("SELECT max(started_at) FROM backfill_studies WHERE job_id = ?",
                       (job_id,)).fetchone()
    return float(row[0]) if row[0] is not None else None


def reset_moving(conn: Connection) -> list[PlannedStudy]:
    """At start: windows and studies left ``moving`` by a stop or a crash go back to
    pending (the attempt not counted); returns those studies (what they brought before
    the stop is kept, and only what is missing is pulled)."""
    now = time.time()

    def work(conn: Connection) -> list[Any]:
        rows = conn.execute(
            """SELECT job_id, study_instance_uid, study_date, remote_instances, attempts,
                      started_at FROM backfill_studies WHERE state = ?""",
            (_P.MOVING.value,)).fetchall()
        for table in ("backfill_studies", "backfill_windows"):
            conn.execute(f"UPDATE {table} SET state = ?, updated_at = ?, "
                         f"attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
                         f"WHERE state = ?", (_P.PENDING.value, now, _P.MOVING.value))
        return list(rows)

    rows = retrying(conn, work)
    return [PlannedStudy(int(r[0]), str(r[1]), r[2], r[3], int(r[4]), float(r[5] or now))
            for r in rows]


def retry_failed(conn: Connection, job_id: int) -> int:
    """``resume`` of a finished backfill: its failed windows and studies are tried again,
    with their attempts counted afresh; returns how many."""
    now = time.time()

    def work(conn: Connection) -> int:
        total = 0
        for table in ("backfill_windows", "backfill_studies"):
            total += int(conn.execute(
                f"UPDATE {table} SET state = ?, attempts = 0, not_before = 0, updated_at = ? "
                f"WHERE job_id = ? AND state = ?",
                (_P.PENDING.value, now, job_id, _P.FAILED.value)).rowcount)
        return total

    return retrying(conn, work)
