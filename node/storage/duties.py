"""Duties: the follow-up work of a catalog event, kept in the catalog so that exactly one
process does it, and a crash between the event and its action loses nothing.

``duties(kind, subject, state, claimed_by, attempts, not_before, enqueued_at, …)``, one
row per ``(kind, subject)``: ``kos`` (the automatic KOS of a stable study; subject: the
Study Instance UID), ``report`` (the extraction of a stored SR or PDF; subject: its SOP
Instance UID). A ``kos`` duty is enqueued in the transaction of its event (the study
marked stable, :mod:`node.storage.stability`); a ``report`` duty just after the store
(:mod:`node.reporting.extraction`: what a crash in between leaves out, the catch-up at
start enqueues); enqueued again, it is pending again with a
new ``enqueued_at`` (a new event: a new KOS). Any ``serve`` process claims it exactly
like the work queue (``FOR UPDATE SKIP LOCKED`` under read committed, ``claimed_by`` its
process id) and finishes it only while the claim is still its own. The maintenance
leader hands back the claims of dead processes (:func:`return_claims`); on SQLite, one
process, :func:`reset_in_progress` does at start.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import Enum

import database
from database import Connection, IsolationValues, dialect_of

__all__ = [
    "SCHEMA",
    "Duty",
    "DutyKindValues",
    "DutyStateValues",
    "claim",
    "counts",
    "enqueue",
    "ensure_schema",
    "finish",
    "release",
    "reset_in_progress",
    "return_claims",
    "return_claims_except",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS duties (
    kind TEXT NOT NULL, subject TEXT NOT NULL,
    state TEXT NOT NULL, claimed_by TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0, enqueued_at REAL NOT NULL, updated_at REAL NOT NULL,
    reason TEXT,
    UNIQUE (kind, subject)
);
CREATE INDEX IF NOT EXISTS duties_pending ON duties(kind, not_before) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS duties_claimed ON duties(claimed_by) WHERE state = 'in_progress';
"""


class DutyKindValues(str, Enum):
    """What a duty is."""

    KOS = "kos"  #: the automatic KOS of a stable study (subject: its UID)
    REPORT = "report"  #: a report instance's extraction (subject: its SOP Instance UID)


class DutyStateValues(str, Enum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Duty:
    """A claimed duty; ``enqueued_at`` tells this event from a later one of the same
    subject (the automatic KOS derives its UIDs from it)."""

    kind: DutyKindValues
    subject: str
    attempts: int
    enqueued_at: float


def ensure_schema(conn: Connection) -> None:
    """Create ``duties`` when missing (idempotent)."""
    database.execute_schema(conn, SCHEMA)


def enqueue(conn: Connection, kind: DutyKindValues | str, subjects: Iterable[str], *,
            now: float, reopen_claimed: bool = True) -> None:
    """Pending duties of ``kind`` for ``subjects``, in the caller's transaction (that of
    the event). One already there becomes pending again, as a new event; with
    ``reopen_claimed`` false, only when it is not pending or in progress already (a
    catch-up that must not take a duty from under its claimer)."""
    kind = DutyKindValues(kind)
    only = "" if reopen_claimed else " WHERE duties.state IN (?, ?)"
    extra: tuple[str, ...] = () if reopen_claimed else (DutyStateValues.DONE.value,
                                                       DutyStateValues.FAILED.value)
    conn.executemany(
        "INSERT INTO duties (kind, subject, state, attempts, not_before, enqueued_at,"
        " updated_at) VALUES (?, ?, ?, 0, 0, ?, ?)"
        " ON CONFLICT (kind, subject) DO UPDATE SET state = excluded.state, attempts = 0,"
        " not_before = 0, claimed_by = NULL, reason = NULL,"
        " enqueued_at = excluded.enqueued_at, updated_at = excluded.updated_at" + only,
        [(kind.value, s, DutyStateValues.PENDING.value, now, now, *extra) for s in subjects])


def claim(conn: Connection, kind: DutyKindValues | str, limit: int, *, claimer: str,
          now: float | None = None) -> list[Duty]:
    """Take up to ``limit`` pending duties of ``kind`` for ``claimer``, oldest first;
    rows another process is claiming are skipped, not waited for."""
    kind = DutyKindValues(kind)
    t = time.time() if now is None else now
    skip = dialect_of(conn).skip_locked

    def work(c: Connection) -> list[Duty]:
        rows = c.execute(
            "UPDATE duties SET state = ?, attempts = attempts + 1, updated_at = ?,"
            " claimed_by = ? WHERE rowid IN (SELECT rowid FROM duties WHERE kind = ?"
            f" AND state = ? AND not_before <= ? ORDER BY rowid LIMIT ?{skip})"
            " RETURNING subject, attempts, enqueued_at",
            (DutyStateValues.IN_PROGRESS.value, t, claimer, kind.value,
             DutyStateValues.PENDING.value, t, limit)).fetchall()
        return [Duty(kind, str(r[0]), int(r[1]), float(r[2])) for r in rows]

    return database.retrying(conn, work, isolation=IsolationValues.READ_COMMITTED)


def finish(conn: Connection, duty: Duty, *, claimer: str,
           state: DutyStateValues = DutyStateValues.DONE, reason: str | None = None) -> bool:
    """Mark the duty ``state`` (done or failed) if the claim is still ``claimer``'s and
    of the same event; ``False`` when it was handed back or enqueued again meanwhile."""
    cur = conn.execute(
        "UPDATE duties SET state = ?, reason = ?, updated_at = ? WHERE kind = ?"
        " AND subject = ? AND state = ? AND claimed_by = ? AND enqueued_at = ?",
        (DutyStateValues(state).value, reason, time.time(), duty.kind.value, duty.subject,
         DutyStateValues.IN_PROGRESS.value, claimer, duty.enqueued_at))
    return cur.rowcount > 0


def release(conn: Connection, duty: Duty, *, claimer: str) -> None:
    """Hand a claimed duty back (this process stops before doing it): pending, without
    counting the attempt."""
    conn.execute(
        "UPDATE duties SET state = ?, claimed_by = NULL, attempts = attempts - 1,"
        " updated_at = ? WHERE kind = ? AND subject = ? AND state = ? AND claimed_by = ?",
        (DutyStateValues.PENDING.value, time.time(), duty.kind.value, duty.subject,
         DutyStateValues.IN_PROGRESS.value, claimer))


def return_claims(conn: Connection, claimers: Collection[str]) -> int:
    """Hand back to pending the duties in progress for ``claimers`` (dead processes);
    return how many."""
    count = 0
    for claimer in claimers:
        cur = conn.execute(
            "UPDATE duties SET state = ?, claimed_by = NULL, updated_at = ?"
            " WHERE state = ? AND claimed_by = ?",
            (DutyStateValues.PENDING.value, time.time(), DutyStateValues.IN_PROGRESS.value,
             claimer))
        count += max(0, cur.rowcount)
    return count


def return_claims_except(conn: Connection, alive: Collection[str]) -> int:
    """Hand back the duties in progress whose claimer is not in ``alive``."""
    rows = conn.execute("SELECT DISTINCT claimed_by FROM duties WHERE state = ?",
                        (DutyStateValues.IN_PROGRESS.value,)).fetchall()
    return return_claims(conn, [str(r[0]) for r in rows
                                if r[0] is not None and str(r[0]) not in alive])


def reset_in_progress(conn: Connection) -> int:
    """At start on SQLite (one process): every duty left in progress is pending again."""
    cur = conn.execute(
        "UPDATE duties SET state = ?, claimed_by = NULL, updated_at = ? WHERE state = ?",
        (DutyStateValues.PENDING.value, time.time(), DutyStateValues.IN_PROGRESS.value))
    return max(0, cur.rowcount)


def counts(conn: Connection, kind: DutyKindValues | str | None = None) -> dict[str, int]:
    """How many duties (of ``kind``) are in each state."""
    sql = "SELECT state, count(*) AS n FROM duties"
    params: tuple[str, ...] = ()
    if kind is not None:
        sql += " WHERE kind = ?"
        params = (DutyKindValues(kind).value,)
    rows = conn.execute(sql + " GROUP BY state", params).fetchall()
    out = {s.value: 0 for s in DutyStateValues}
    out.update({str(r[0]): int(r[1]) for r in rows})
    return out
