"""Every write on the ``work`` table: enqueue and delete (inside the caller's
transaction), claims, outcomes, holds and retries."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from database import Connection
from indexer._enums import to_member
from indexer.queue._states import (
    _FAILED,
    _IN_PROGRESS,
    _NOT_SAMPLED,
    _PENDING,
    _SKIPPED,
    HELD,
    WorkItem,
    WorkStateValues,
    _chunks,
    _own_transaction,
)

__all__ = [
    "claim",
    "defer",
    "delete",
    "enqueue",
    "hold",
    "mark",
    "mark_done",
    "mark_failed",
    "mark_skipped",
    "release",
    "requeue_all",
    "reset_in_progress",
    "retry_later",
    "take",
]


def enqueue(
    conn: Connection,
    sop_instance_uid: str,
    path: str,
    *,
    replace: bool = False,
    now: float | None = None,
) -> None:
    """Put an instance on the queue, inside the caller's transaction (does not commit).

    An instance already queued is left as it is, unless ``replace`` is true (the bytes were
    received again): then it goes back to ``pending`` with a fresh attempt count and a new
    arrival time.
    """
    if not sop_instance_uid:
        raise ValueError("sop_instance_uid must not be empty")
    if not path:
        raise ValueError("path must not be empty")
    t = time.time() if now is None else now
    on_conflict = (
        "DO UPDATE SET path = excluded.path, state = excluded.state, attempts = 0,"
        " reason = NULL, not_before = 0, updated_at = excluded.updated_at,"
        " enqueued_at = excluded.enqueued_at"
        if replace
        else "DO NOTHING"
    )
    conn.execute(
        "INSERT INTO work (sop_instance_uid, path, state, attempts, reason, not_before,"
        " updated_at, enqueued_at) VALUES (?, ?, ?, 0, NULL, 0, ?, ?)"
        f" ON CONFLICT (sop_instance_uid) {on_conflict}",
        (sop_instance_uid, path, _PENDING, t, t),
    )


def delete(conn: Connection, sop_instance_uids: str | Iterable[str]) -> None:
    """Remove instances from the queue, inside the caller's transaction (does not commit).

    Their slice geometry goes too, and a volume series that loses a slice but keeps others
    is sampled again (:func:`indexer.slices.forget`).
    """
    from indexer import slices

    uids = [sop_instance_uids] if isinstance(sop_instance_uids, str) else list(sop_instance_uids)
    conn.executemany("DELETE FROM work WHERE sop_instance_uid = ?", [(u,) for u in uids])
    slices.forget(conn, uids)


def claim(conn: Connection, n: int, *, now: float | None = None) -> list[WorkItem]:
    """Atomically take up to ``n`` pending instances whose ``not_before`` has passed.

    They become ``in_progress`` and their ``attempts`` goes up by one. Oldest first.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    t = time.time() if now is None else now
    with _own_transaction(conn, "claim"):
        rows = conn.execute(
            "UPDATE work SET state = ?, attempts = attempts + 1, updated_at = ?"
            " WHERE rowid IN (SELECT rowid FROM work WHERE state = ?"
            " AND not_before <= ? ORDER BY rowid LIMIT ?)"
            " RETURNING sop_instance_uid, path, attempts, enqueued_at",
            (_IN_PROGRESS, t, _PENDING, t, n),
        ).fetchall()
    return [_item(r) for r in rows]


def _item(r: Any) -> WorkItem:
    return WorkItem(str(r[0]), str(r[1]), int(r[2]), float(r[3] or 0.0))


def take(conn: Connection, sop_instance_uids: Sequence[str], *,
         now: float | None = None) -> list[WorkItem]:
    """Claim these instances, inside the caller's transaction (a series' sampling
    decision): those pending (held or not) or ``not_sampled`` become ``in_progress``, as
    :func:`claim` does; others (done, in progress, failed…) are left as they are."""
    t = time.time() if now is None else now
    out: list[WorkItem] = []
    for chunk in _chunks(sop_instance_uids):
        out += [_item(r) for r in conn.execute(
            "UPDATE work SET state = ?, attempts = attempts + 1, not_before = 0,"
            " reason = NULL, updated_at = ?"
            f" WHERE state IN (?, ?) AND sop_instance_uid IN ({','.join('?' * len(chunk))})"
            " RETURNING sop_instance_uid, path, attempts, enqueued_at",
            [_IN_PROGRESS, t, _PENDING, _NOT_SAMPLED, *chunk],
        )]
    return out


def mark(conn: Connection, sop_instance_uids: Sequence[str], state: WorkStateValues | str,
         reason: str | None = None) -> None:
    """Set instances' state (and reason), inside the caller's transaction."""
    member = to_member(WorkStateValues, state, name="state")
    conn.executemany(
        "UPDATE work SET state = ?, reason = ?, not_before = 0, updated_at = ?"
        " WHERE sop_instance_uid = ?",
        [(member.value, reason, time.time(), u) for u in sop_instance_uids],
    )


def hold(conn: Connection, sop_instance_uids: Sequence[str], reason: str) -> None:
    """Claimed slices of a volume wait for their series to be complete, inside the
    caller's transaction: pending, never claimed again (the claim is not counted);
    :mod:`indexer.slices` and the worker's sampling decision move them on."""
    conn.executemany(
        "UPDATE work SET state = ?, reason = ?, not_before = ?, updated_at = ?,"
        " attempts = attempts - 1 WHERE sop_instance_uid = ? AND state = ?",
        [(_PENDING, reason, HELD, time.time(), u, _IN_PROGRESS) for u in sop_instance_uids],
    )


def defer(conn: Connection, sop_instance_uids: Sequence[str], *, until: float) -> None:
    """Give claimed instances back to be claimed again from ``until`` (the claim is not
    counted): their series is being sampled right now."""
    _set_state(conn, "defer", sop_instance_uids, WorkStateValues.PENDING, None, until,
               refund_attempt=True)


def _set_state(
    conn: Connection,
    what: str,
    uids: Sequence[str],
    state: WorkStateValues,
    reason: str | None,
    not_before: float = 0.0,
    *,
    refund_attempt: bool = False,
) -> None:
    t = time.time()
    with _own_transaction(conn, what):
        conn.executemany(
            "UPDATE work SET state = ?, reason = ?, not_before = ?, updated_at = ?,"
            " attempts = attempts - ? WHERE sop_instance_uid = ?",
            [(state.value, reason, not_before, t, int(refund_attempt), u) for u in uids],
        )


def release(conn: Connection, uids: Sequence[str]) -> None:
    """Give claimed instances back untouched (a clean stop): pending, the claim not counted."""
    _set_state(conn, "release", uids, WorkStateValues.PENDING, None, refund_attempt=True)


def mark_done(conn: Connection, uids: Sequence[str]) -> None:
    """Mark instances indexed."""
    _set_state(conn, "mark_done", uids, WorkStateValues.DONE, None)


def mark_skipped(conn: Connection, sop_instance_uid: str, reason: str) -> None:
    """Mark an instance that holds no image (SR, KOS, PDF…) skipped, with the reason."""
    _set_state(conn, "mark_skipped", [sop_instance_uid], WorkStateValues.SKIPPED, reason)


def mark_failed(conn: Connection, sop_instance_uid: str, reason: str) -> None:
    """Mark an instance failed for good, with the reason."""
    _set_state(conn, "mark_failed", [sop_instance_uid], WorkStateValues.FAILED, reason)


def retry_later(
    conn: Connection,
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


def reset_in_progress(conn: Connection, *, max_attempts: int | None = None) -> int:
    """At start: put instances left ``in_progress`` by a crash or a kill back to pending.

    Those that have already been claimed ``max_attempts`` times are marked failed instead
    (they may be what kills the worker). Returns how many went back to pending.
    """
    t = time.time()
    with _own_transaction(conn, "reset_in_progress"):
        if max_attempts is not None:
            conn.execute(
                "UPDATE work SET state = ?, updated_at = ?, reason ="
                " 'interrupted ' || attempts || ' times while being processed"
                " (the worker crashed or was killed)'"
                " WHERE state = ? AND attempts >= ?",
                (_FAILED, t, _IN_PROGRESS, max_attempts),
            )
        cur = conn.execute(
            "UPDATE work SET state = ?, updated_at = ? WHERE state = ?",
            (_PENDING, t, _IN_PROGRESS),
        )
    return cur.rowcount


def requeue_all(conn: Connection) -> int:
    """Put every instance that is not skipped back to pending (after a model change)."""
    with _own_transaction(conn, "requeue_all"):
        cur = conn.execute(
            "UPDATE work SET state = ?, attempts = 0, reason = NULL, not_before = 0,"
            " updated_at = ? WHERE state != ?",
            (_PENDING, time.time(), _SKIPPED),
        )
    return cur.rowcount
