"""The work queue: one row per received instance, in the catalog's ``work`` table.

States (``WorkStateValues``)::

    pending ──claim──▶ in_progress ──▶ done | skipped | failed
       ▲                    │
       └── retry_later ─────┘   (transient error: back to pending with not_before)
       └── reset_in_progress ◀─ at start, after a crash or a kill

``enqueue`` and ``delete`` run inside the caller's transaction and never commit (the node
calls ``enqueue`` in its ingest transaction). Every other mutating function opens its own
``BEGIN IMMEDIATE`` transaction and commits it; calling one while the connection is
already in a transaction raises :class:`~indexer.errors.QueueError`.

``attempts`` counts claims: a claim increments it, so an instance that kills the worker
every time it is touched is marked failed by ``reset_in_progress`` once it has used up
``max_attempts``, instead of crashing the worker forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import sqlite3
import time
from collections.abc import Iterator, Sequence

from indexer._schema import SCHEMA
from indexer.errors import QueueError

__all__ = [
    "QueueCounts",
    "WorkItem",
    "WorkStateValues",
    "claim",
    "counts",
    "delete",
    "enqueue",
    "ensure_schema",
    "mark_done",
    "mark_failed",
    "mark_skipped",
    "release",
    "requeue_all",
    "reset_in_progress",
    "retry_later",
]


class WorkStateValues(str, enum.Enum):
    """The state of one instance in the work queue."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """A claimed instance: its UID, its path relative to ``data_dir``, and claims so far."""

    sop_instance_uid: str
    path: str
    attempts: int


@dataclasses.dataclass(frozen=True)
class QueueCounts:
    """Counts by state, plus how many instances were failed or skipped for each reason."""

    by_state: dict[str, int]
    failed_reasons: dict[str, int]
    skipped_reasons: dict[str, int]

    @property
    def pending(self) -> int:
        return self.by_state.get(WorkStateValues.PENDING.value, 0)

    @property
    def in_progress(self) -> int:
        return self.by_state.get(WorkStateValues.IN_PROGRESS.value, 0)

    @property
    def done(self) -> int:
        return self.by_state.get(WorkStateValues.DONE.value, 0)

    @property
    def skipped(self) -> int:
        return self.by_state.get(WorkStateValues.SKIPPED.value, 0)

    @property
    def failed(self) -> int:
        return self.by_state.get(WorkStateValues.FAILED.value, 0)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "by_state": dict(self.by_state),
            "failed_reasons": dict(self.failed_reasons),
            "skipped_reasons": dict(self.skipped_reasons),
        }


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the indexer's tables if missing (idempotent; commits)."""
    if conn.in_transaction:
        raise QueueError("ensure_schema must be called outside a transaction")
    conn.executescript(SCHEMA)


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection, what: str) -> Iterator[None]:
    if conn.in_transaction:
        raise QueueError(f"{what} opens its own transaction; call it outside one")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def enqueue(
    conn: sqlite3.Connection,
    sop_instance_uid: str,
    path: str,
    *,
    replace: bool = False,
    now: float | None = None,
) -> None:
    """Put an instance on the queue, inside the caller's transaction (does not commit).

    An instance already queued is left as it is, unless ``replace`` is true (the bytes were
    received again): then it goes back to ``pending`` with a fresh attempt count.
    """
    if not sop_instance_uid:
        raise ValueError("sop_instance_uid must not be empty")
    if not path:
        raise ValueError("path must not be empty")
    t = time.time() if now is None else now
    if replace:
        conn.execute(
            "INSERT INTO work (sop_instance_uid, path, state, attempts, reason, not_before,"
            " updated_at) VALUES (?, ?, 'pending', 0, NULL, 0, ?)"
            " ON CONFLICT (sop_instance_uid) DO UPDATE SET path = excluded.path,"
            " state = 'pending', attempts = 0, reason = NULL, not_before = 0,"
            " updated_at = excluded.updated_at",
            (sop_instance_uid, path, t),
        )
    else:
        conn.execute(
            "INSERT OR IGNORE INTO work (sop_instance_uid, path, state, attempts, not_before,"
            " updated_at) VALUES (?, ?, 'pending', 0, 0, ?)",
            (sop_instance_uid, path, t),
        )


def delete(conn: sqlite3.Connection, sop_instance_uid: str) -> None:
    """Remove an instance from the queue, inside the caller's transaction (does not commit)."""
    conn.execute("DELETE FROM work WHERE sop_instance_uid = ?", (sop_instance_uid,))


def claim(conn: sqlite3.Connection, n: int, *, now: float | None = None) -> list[WorkItem]:
    """Atomically take up to ``n`` pending instances whose ``not_before`` has passed.

    They become ``in_progress`` and their ``attempts`` goes up by one. Oldest first.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    t = time.time() if now is None else now
    with _immediate(conn, "claim"):
        rows = conn.execute(
            "UPDATE work SET state = 'in_progress', attempts = attempts + 1, updated_at = ?"
            " WHERE rowid IN (SELECT rowid FROM work WHERE state = 'pending'"
            " AND not_before <= ? ORDER BY rowid LIMIT ?)"
            " RETURNING sop_instance_uid, path, attempts",
            (t, t, n),
        ).fetchall()
    return [WorkItem(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def _set_state(
    conn: sqlite3.Connection,
    what: str,
    uids: Sequence[str],
    state: WorkStateValues,
    reason: str | None,
    not_before: float = 0.0,
    *,
    refund_attempt: bool = False,
) -> None:
    t = time.time()
    with _immediate(conn, what):
        conn.executemany(
            "UPDATE work SET state = ?, reason = ?, not_before = ?, updated_at = ?,"
            " attempts = attempts - ? WHERE sop_instance_uid = ?",
            [(state.value, reason, not_before, t, int(refund_attempt), u) for u in uids],
        )


def release(conn: sqlite3.Connection, uids: Sequence[str]) -> None:
    """Give claimed instances back untouched (a clean stop): pending, the claim not counted."""
    _set_state(conn, "release", uids, WorkStateValues.PENDING, None, refund_attempt=True)


def mark_done(conn: sqlite3.Connection, uids: Sequence[str]) -> None:
    """Mark instances indexed."""
    _set_state(conn, "mark_done", uids, WorkStateValues.DONE, None)


def mark_skipped(conn: sqlite3.Connection, sop_instance_uid: str, reason: str) -> None:
    """Mark an instance that holds no image (SR, KOS, PDF…) skipped, with the reason."""
    _set_state(conn, "mark_skipped", [sop_instance_uid], WorkStateValues.SKIPPED, reason)


def mark_failed(conn: sqlite3.Connection, sop_instance_uid: str, reason: str) -> None:
    """Mark an instance failed for good, with the reason."""
    _set_state(conn, "mark_failed", [sop_instance_uid], WorkStateValues.FAILED, reason)


def retry_later(
    conn: sqlite3.Connection,
    sop_instance_uid: str,
    reason: str,
    *,
    backoff_s: float,
    now: float | None = None,
) -> None:
    """Put an instance back to pending after a transient error, not before ``backoff_s``."""
    if backoff_s < 0:
        raise ValueError(f"backoff_s must not be negative, got {backoff_s}")
    t = time.time() if now is None else now
    _set_state(
        conn, "retry_later", [sop_instance_uid], WorkStateValues.PENDING, reason, t + backoff_s
    )


def reset_in_progress(conn: sqlite3.Connection, *, max_attempts: int | None = None) -> int:
    """At start: put instances left ``in_progress`` by a crash or a kill back to pending.

    Those that have already been claimed ``max_attempts`` times are marked failed instead
    (they may be what kills the worker). Returns how many went back to pending.
    """
    t = time.time()
    with _immediate(conn, "reset_in_progress"):
        if max_attempts is not None:
            conn.execute(
                "UPDATE work SET state = 'failed', updated_at = ?, reason ="
                " 'interrupted ' || attempts || ' times while being processed"
                " (the worker crashed or was killed)'"
                " WHERE state = 'in_progress' AND attempts >= ?",
                (t, max_attempts),
            )
        cur = conn.execute(
            "UPDATE work SET state = 'pending', updated_at = ? WHERE state = 'in_progress'",
            (t,),
        )
    return cur.rowcount


def requeue_all(conn: sqlite3.Connection) -> int:
    """Put every instance that is not skipped back to pending (after a model change)."""
    with _immediate(conn, "requeue_all"):
        cur = conn.execute(
            "UPDATE work SET state = 'pending', attempts = 0, reason = NULL, not_before = 0,"
            " updated_at = ? WHERE state != 'skipped'",
            (time.time(),),
        )
    return cur.rowcount


def counts(conn: sqlite3.Connection) -> QueueCounts:
    """Counts by state (every state present, zero included) and by failure/skip reason."""
    by_state = {s.value: 0 for s in WorkStateValues}
    for state, n in conn.execute("SELECT state, count(*) FROM work GROUP BY state"):
        by_state[str(state)] = int(n)
    reasons: dict[str, dict[str, int]] = {"failed": {}, "skipped": {}}
    for state, reason, n in conn.execute(
        "SELECT state, coalesce(reason, ''), count(*) FROM work"
        " WHERE state IN ('failed', 'skipped') GROUP BY state, reason ORDER BY count(*) DESC"
    ):
        reasons[str(state)][str(reason)] = int(n)
    return QueueCounts(by_state, reasons["failed"], reasons["skipped"])
