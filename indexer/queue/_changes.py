"""Every write on the ``work`` table: enqueue and delete (inside the caller's
transaction), claims, outcomes, holds and retries."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from database import Connection, IsolationValues, dialect_of, retrying
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
    _refuse_open_transaction,
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
    "return_claims",
    "take",
]

#: the condition that a claimed row is still the caller's: in progress and claimed by the
#: same claimer (``?``; None for the embedded worker, which claims without a name)
_STILL_MINE = "state = ? AND claimed_by IS NOT DISTINCT FROM ?"


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
        " enqueued_at = excluded.enqueued_at, claimed_by = NULL"
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


def claim(conn: Connection, n: int, *, now: float | None = None,
          claimer: str | None = None) -> list[WorkItem]:
    """Atomically take up to ``n`` pending instances whose ``not_before`` has passed.

    They become ``in_progress``, claimed by ``claimer`` (a process id on a shared
    catalog; None for the embedded worker), and their ``attempts`` goes up by one. Oldest
    first. On PostgreSQL rows another claimer is taking are skipped, not waited for
    (``FOR UPDATE SKIP LOCKED`` under read committed): concurrent claimers take disjoint
    batches.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    _refuse_open_transaction(conn, "claim")
    t = time.time() if now is None else now
    sql = (
        "UPDATE work SET state = ?, attempts = attempts + 1, updated_at = ?, claimed_by = ?"
        " WHERE rowid IN (SELECT rowid FROM work WHERE state = ?"
        f" AND not_before <= ? ORDER BY rowid LIMIT ?{dialect_of(conn).skip_locked})"
        " RETURNING sop_instance_uid, path, attempts, enqueued_at, rowid"
    )

    def work(c: Connection) -> list[Any]:
        return c.execute(sql, (_IN_PROGRESS, t, claimer, _PENDING, t, n)).fetchall()

    rows = retrying(conn, work, isolation=IsolationValues.READ_COMMITTED)
    # RETURNING gives no order: oldest first, as claimed
    return [_item(r) for r in sorted(rows, key=lambda r: int(r[4]))]


def return_claims(conn: Connection, claimers: Collection[str]) -> int:
    """Hand back to ``pending`` the instances claimed by these claimers (processes no
    longer alive), without counting their claim twice: the claim counted an attempt
    already, so an instance that kills every worker taking it is still failed after
    ``max_attempts`` claims. A late original claimer can no longer complete them (its
    outcomes and vectors are written only while the claim is still its own). Returns how
    many went back."""
    _refuse_open_transaction(conn, "return_claims")
    names = sorted(set(claimers))
    if not names:
        return 0
    t = time.time()

    def work(c: Connection) -> int:
        back = 0
        for chunk in _chunks(names):
            back += c.execute(
                "UPDATE work SET state = ?, claimed_by = NULL, updated_at = ?"
                f" WHERE state = ? AND claimed_by IN ({','.join('?' * len(chunk))})",
                [_PENDING, t, _IN_PROGRESS, *chunk],
            ).rowcount
        return back

    return retrying(conn, work, isolation=IsolationValues.READ_COMMITTED)


def _item(r: Any) -> WorkItem:
    return WorkItem(str(r[0]), str(r[1]), int(r[2]), float(r[3] or 0.0))


def take(conn: Connection, sop_instance_uids: Sequence[str], *,
         now: float | None = None, claimer: str | None = None) -> list[WorkItem]:
    """Claim these instances, inside the caller's transaction (a series' sampling
    decision): those pending (held or not) or ``not_sampled`` become ``in_progress``, as
    :func:`claim` does; others (done, in progress, failed…) are left as they are."""
    t = time.time() if now is None else now
    out: list[WorkItem] = []
    for chunk in _chunks(sop_instance_uids):
        out += [_item(r) for r in conn.execute(
            "UPDATE work SET state = ?, attempts = attempts + 1, not_before = 0,"
            " reason = NULL, updated_at = ?, claimed_by = ?"
            f" WHERE state IN (?, ?) AND sop_instance_uid IN ({','.join('?' * len(chunk))})"
            " RETURNING sop_instance_uid, path, attempts, enqueued_at",
            [_IN_PROGRESS, t, claimer, _PENDING, _NOT_SAMPLED, *chunk],
        )]
    return out


def mark(conn: Connection, sop_instance_uids: Sequence[str], state: WorkStateValues | str,
         reason: str | None = None) -> None:
    """Set instances' state (and reason), inside the caller's transaction."""
    member = to_member(WorkStateValues, state, name="state")
    conn.executemany(
        "UPDATE work SET state = ?, reason = ?, not_before = 0, updated_at = ?,"
        " claimed_by = NULL WHERE sop_instance_uid = ?",
        [(member.value, reason, time.time(), u) for u in sop_instance_uids],
    )


def hold(conn: Connection, sop_instance_uids: Sequence[str], reason: str, *,
         claimer: str | None = None) -> None:
    """Claimed slices of a volume wait for their series to be complete, inside the
    caller's transaction: pending, never claimed again (the claim is not counted);
    :mod:`indexer.slices` and the worker's sampling decision move them on. Only those
    still claimed by ``claimer``."""
    conn.executemany(
        "UPDATE work SET state = ?, reason = ?, not_before = ?, updated_at = ?,"
        " attempts = attempts - 1, claimed_by = NULL"
        f" WHERE sop_instance_uid = ? AND {_STILL_MINE}",
        [(_PENDING, reason, HELD, time.time(), u, _IN_PROGRESS, claimer)
         for u in sop_instance_uids],
    )


def defer(conn: Connection, sop_instance_uids: Sequence[str], *, until: float,
          claimer: str | None = None) -> int:
    """Give claimed instances back to be claimed again from ``until`` (the claim is not
    counted): their series is being sampled right now."""
    return _settle(conn, "defer", sop_instance_uids, WorkStateValues.PENDING, None, until,
                   refund_attempt=True, claimer=claimer)


def _settle(
    conn: Connection,
    what: str,
    uids: Sequence[str],
    state: WorkStateValues,
    reason: str | None,
    not_before: float = 0.0,
    *,
    refund_attempt: bool = False,
    claimer: str | None = None,
) -> int:
    """The outcome of claimed instances, for those still claimed by ``claimer`` (one
    whose claim was handed back, or that was deleted or received again meanwhile, is
    left alone: each claim is completed once). Returns how many were settled."""
    _refuse_open_transaction(conn, what)
    t = time.time()

    def work(c: Connection) -> int:
        return sum(c.execute(
            "UPDATE work SET state = ?, reason = ?, not_before = ?, updated_at = ?,"
            " attempts = attempts - ?, claimed_by = NULL"
            f" WHERE sop_instance_uid IN ({','.join('?' * len(chunk))}) AND {_STILL_MINE}",
            [state.value, reason, not_before, t, int(refund_attempt), *chunk, _IN_PROGRESS,
             claimer]).rowcount for chunk in _chunks(dict.fromkeys(uids)))

    # conditional UPDATEs, each row re-checked on its lock: exact under read committed,
    # where serializable would make concurrent workers' outcomes collide
    return retrying(conn, work, isolation=IsolationValues.READ_COMMITTED)


def release(conn: Connection, uids: Sequence[str], *, claimer: str | None = None) -> int:
    """Give claimed instances back untouched (a clean stop): pending, the claim not counted."""
    return _settle(conn, "release", uids, WorkStateValues.PENDING, None, refund_attempt=True,
                   claimer=claimer)


def mark_done(conn: Connection, uids: Sequence[str], *, claimer: str | None = None) -> int:
    """Mark instances indexed (those still claimed by ``claimer``); returns how many."""
    return _settle(conn, "mark_done", uids, WorkStateValues.DONE, None, claimer=claimer)


def mark_skipped(conn: Connection, sop_instance_uid: str, reason: str, *,
                 claimer: str | None = None) -> int:
    """Mark an instance that holds no image (SR, KOS, PDF…) skipped, with the reason."""
    return _settle(conn, "mark_skipped", [sop_instance_uid], WorkStateValues.SKIPPED, reason,
                   claimer=claimer)


def mark_failed(conn: Connection, sop_instance_uid: str, reason: str, *,
                claimer: str | None = None) -> int:
    """Mark an instance failed for good, with the reason."""
    return _settle(conn, "mark_failed", [sop_instance_uid], WorkStateValues.FAILED, reason,
                   claimer=claimer)


def retry_later(
    conn: Connection,
    sop_instance_uid: str,
    reason: str,
    *,
    backoff_s: float,
    now: float | None = None,
    claimer: str | None = None,
) -> int:
    """Put an instance back to pending after a transient error, not before ``backoff_s``."""
    if backoff_s < 0:
        raise ValueError(f"backoff_s must not be negative, got {backoff_s}")
    t = time.time() if now is None else now
    return _settle(conn, "retry_later", [sop_instance_uid], WorkStateValues.PENDING, reason,
                   t + backoff_s, claimer=claimer)


def reset_in_progress(conn: Connection, *, max_attempts: int | None = None) -> int:
    """At start of the embedded set-up (one process per catalog): put instances left
    ``in_progress`` by a crash or a kill back to pending. On a shared catalog the
    maintenance leader hands back only the claims of dead processes
    (:func:`return_claims`) instead.

    Those that have already been claimed ``max_attempts`` times are marked failed instead
    (they may be what kills the worker). Returns how many went back to pending.
    """
    t = time.time()
    with _own_transaction(conn, "reset_in_progress"):
        if max_attempts is not None:
            conn.execute(
                "UPDATE work SET state = ?, updated_at = ?, claimed_by = NULL, reason ="
                " 'interrupted ' || attempts || ' times while being processed"
                " (the worker crashed or was killed)'"
                " WHERE state = ? AND attempts >= ?",
                (_FAILED, t, _IN_PROGRESS, max_attempts),
            )
        cur = conn.execute(
            "UPDATE work SET state = ?, updated_at = ?, claimed_by = NULL WHERE state = ?",
            (_PENDING, t, _IN_PROGRESS),
        )
    return cur.rowcount


def requeue_all(conn: Connection) -> int:
    """Put every instance that is not skipped back to pending (after a model change)."""
    with _own_transaction(conn, "requeue_all"):
        cur = conn.execute(
            "UPDATE work SET state = ?, attempts = 0, reason = NULL, not_before = 0,"
            " updated_at = ?, claimed_by = NULL WHERE state != ?",
            (_PENDING, time.time(), _SKIPPED),
        )
    return cur.rowcount
