"""The work queue: one row per received instance, in the catalog's ``work`` table.

States (``WorkStateValues``)::

    pending ──claim──▶ in_progress ──▶ done | skipped | failed
       ▲                    │
       └── retry_later ─────┘   (transient error: back to pending with not_before)
       └── reset_in_progress ◀─ at start, after a crash or a kill

``enqueue`` and ``delete`` run inside the caller's transaction and never commit (the node
calls ``enqueue`` in its ingest transaction and ``delete`` in its deletion transaction).
Every other mutating function opens its own transaction (:func:`database.transaction`)
and commits it; calling one while the connection is already in a transaction raises
:class:`~indexer.errors.QueueError`.

The node reads the queue through :func:`counts` (the whole queue, or the instances of one
study, series or instance, whose UIDs it reads from its own tables) and :func:`states_of`;
it never runs SQL on ``work``. The table is created by :func:`indexer.ensure_schema`.

``attempts`` counts claims: a claim increments it, so an instance that kills the worker
every time it is touched is marked failed by ``reset_in_progress`` once it has used up
``max_attempts``, instead of crashing the worker forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import time
from collections.abc import Iterable, Iterator, Sequence

from database import Connection, transaction
from indexer.errors import QueueError

__all__ = [
    "QueueCounts",
    "WorkItem",
    "WorkStateValues",
    "claim",
    "counts",
    "delete",
    "enqueue",
    "mark_done",
    "mark_failed",
    "mark_skipped",
    "release",
    "requeue_all",
    "reset_in_progress",
    "retry_later",
    "states_of",
]


class WorkStateValues(str, enum.Enum):
    """The state of one instance in the work queue."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


_PENDING = WorkStateValues.PENDING.value
_IN_PROGRESS = WorkStateValues.IN_PROGRESS.value
_SKIPPED = WorkStateValues.SKIPPED.value
_FAILED = WorkStateValues.FAILED.value
#: UIDs per statement when a call names many (below SQLite's 999 parameters)
_CHUNK = 900


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
    def waiting(self) -> int:
        """Instances not indexed yet but going to be: pending or in progress."""
        return self.pending + self.in_progress

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


@contextlib.contextmanager
def _own_transaction(conn: Connection, what: str) -> Iterator[None]:
    if conn.in_transaction:
        raise QueueError(f"{what} opens its own transaction; call it outside one")
    with transaction(conn):
        yield


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
    received again): then it goes back to ``pending`` with a fresh attempt count.
    """
    if not sop_instance_uid:
        raise ValueError("sop_instance_uid must not be empty")
    if not path:
        raise ValueError("path must not be empty")
    t = time.time() if now is None else now
    on_conflict = (
        "DO UPDATE SET path = excluded.path, state = excluded.state, attempts = 0,"
        " reason = NULL, not_before = 0, updated_at = excluded.updated_at"
        if replace
        else "DO NOTHING"
    )
    conn.execute(
        "INSERT INTO work (sop_instance_uid, path, state, attempts, reason, not_before,"
        " updated_at) VALUES (?, ?, ?, 0, NULL, 0, ?)"
        f" ON CONFLICT (sop_instance_uid) {on_conflict}",
        (sop_instance_uid, path, _PENDING, t),
    )


def delete(conn: Connection, sop_instance_uids: str | Iterable[str]) -> None:
    """Remove instances from the queue, inside the caller's transaction (does not commit)."""
    uids = [sop_instance_uids] if isinstance(sop_instance_uids, str) else sop_instance_uids
    conn.executemany("DELETE FROM work WHERE sop_instance_uid = ?", [(u,) for u in uids])


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
            " RETURNING sop_instance_uid, path, attempts",
            (_IN_PROGRESS, t, _PENDING, t, n),
        ).fetchall()
    return [WorkItem(str(r[0]), str(r[1]), int(r[2])) for r in rows]


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


def _chunks(uids: Iterable[str]) -> Iterator[list[str]]:
    """UIDs in chunks small enough for one statement's parameters."""
    chunk: list[str] = []
    for uid in uids:
        chunk.append(uid)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def counts(conn: Connection, sop_instance_uids: Iterable[str] | None = None) -> QueueCounts:
    """Counts by state (every state present, zero included) and by failure/skip reason.

    With ``sop_instance_uids``, over those instances only (e.g. the instances of one
    study, which the caller reads from its own tables); otherwise over the whole queue.
    """
    by_state = {s.value: 0 for s in WorkStateValues}
    reasons: dict[str, dict[str, int]] = {_FAILED: {}, _SKIPPED: {}}
    scopes: Iterable[list[str] | None] = (
        [None] if sop_instance_uids is None else _chunks(sop_instance_uids)
    )
    for scope in scopes:
        where, params = "1 = 1", []
        if scope is not None:
            where, params = f"sop_instance_uid IN ({','.join('?' * len(scope))})", scope
        for state, n in conn.execute(
            f"SELECT state, count(*) FROM work WHERE {where} GROUP BY state", params
        ):
            by_state[str(state)] += int(n)
        for state, reason, n in conn.execute(
            "SELECT state, coalesce(reason, ''), count(*) FROM work"
            f" WHERE state IN (?, ?) AND {where} GROUP BY state, reason",
            [_FAILED, _SKIPPED, *params],
        ):
            bucket = reasons[str(state)]
            bucket[str(reason)] = bucket.get(str(reason), 0) + int(n)
    ordered = {k: dict(sorted(v.items(), key=lambda kv: -kv[1])) for k, v in reasons.items()}
    return QueueCounts(by_state, ordered[_FAILED], ordered[_SKIPPED])


def states_of(conn: Connection, sop_instance_uids: Iterable[str]) -> dict[str, WorkStateValues]:
    """The queue state of each of these instances (those not on the queue are left out)."""
    out: dict[str, WorkStateValues] = {}
    for chunk in _chunks(sop_instance_uids):
        marks = ",".join("?" * len(chunk))
        for uid, state in conn.execute(
            f"SELECT sop_instance_uid, state FROM work WHERE sop_instance_uid IN ({marks})",
            chunk,
        ):
            out[str(uid)] = WorkStateValues(state)
    return out
