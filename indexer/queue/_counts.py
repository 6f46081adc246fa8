"""Reading the work queue: counts by state and reason, the states of some instances, and
the arrival of the oldest instance not looked at yet."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from database import Connection
from indexer.queue._states import (
    _FAILED,
    _IN_PROGRESS,
    _NOT_SAMPLED,
    _PENDING,
    _SKIPPED,
    HELD,
    WorkStateValues,
    _chunks,
)

__all__ = ["QueueCounts", "claimed", "counts", "held", "oldest_unsorted_arrival", "states_of"]


@dataclasses.dataclass(frozen=True)
class QueueCounts:
    """Counts by state, plus how many instances were failed, skipped or not sampled for
    each reason."""

    by_state: dict[str, int]
    failed_reasons: dict[str, int]
    skipped_reasons: dict[str, int]
    not_sampled_reasons: dict[str, int] = dataclasses.field(default_factory=dict)

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
    def not_sampled(self) -> int:
        """Slices of volumes left out of their series' sample (stored, never decoded)."""
        return self.by_state.get(WorkStateValues.NOT_SAMPLED.value, 0)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "by_state": dict(self.by_state),
            "failed_reasons": dict(self.failed_reasons),
            "skipped_reasons": dict(self.skipped_reasons),
            "not_sampled_reasons": dict(self.not_sampled_reasons),
        }


def counts(conn: Connection, sop_instance_uids: Iterable[str] | None = None) -> QueueCounts:
    """Counts by state (every state present, zero included) and by failure/skip reason.

    With ``sop_instance_uids``, over those instances only (e.g. the instances of one
    study, which the caller reads from its own tables); otherwise over the whole queue.
    """
    by_state = {s.value: 0 for s in WorkStateValues}
    reasons: dict[str, dict[str, int]] = {_FAILED: {}, _SKIPPED: {}, _NOT_SAMPLED: {}}
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
            f" WHERE state IN (?, ?, ?) AND {where} GROUP BY state, reason",
            [_FAILED, _SKIPPED, _NOT_SAMPLED, *params],
        ):
            bucket = reasons[str(state)]
            bucket[str(reason)] = bucket.get(str(reason), 0) + int(n)
    ordered = {k: dict(sorted(v.items(), key=lambda kv: -kv[1])) for k, v in reasons.items()}
    return QueueCounts(by_state, ordered[_FAILED], ordered[_SKIPPED], ordered[_NOT_SAMPLED])


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


def oldest_unsorted_arrival(conn: Connection) -> float | None:
    """When the oldest instance still waiting to be looked at arrived (pending and not
    held: it may yet be a slice of a series about to be sampled); None when there is none."""
    row = conn.execute(
        "SELECT min(enqueued_at) FROM work WHERE state = ? AND not_before < ?",
        (_PENDING, HELD),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def held(conn: Connection, sop_instance_uids: Iterable[str]) -> set[str]:
    """Those of these instances that are held (slices waiting for their series' sample)."""
    return _those(conn, sop_instance_uids, "state = ? AND not_before >= ?", [_PENDING, HELD])


def claimed(conn: Connection, sop_instance_uids: Iterable[str], *,
            claimer: str | None = None) -> set[str]:
    """Those of these instances still claimed by ``claimer`` (in progress, claimed under
    that name; None: the embedded worker's unnamed claims)."""
    return _those(conn, sop_instance_uids, "state = ? AND claimed_by IS NOT DISTINCT FROM ?",
                  [_IN_PROGRESS, claimer])


def _those(conn: Connection, sop_instance_uids: Iterable[str], condition: str,
           parameters: list[object]) -> set[str]:
    """Those of these instances whose work row meets ``condition`` (a constant with its
    ``parameters``), read in chunks of UIDs."""
    out: set[str] = set()
    for chunk in _chunks(sop_instance_uids):
        marks = ",".join("?" * len(chunk))
        out.update(str(uid) for (uid,) in conn.execute(
            f"SELECT sop_instance_uid FROM work WHERE {condition}"
            f" AND sop_instance_uid IN ({marks})",
            [*parameters, *chunk],
        ))
    return out
