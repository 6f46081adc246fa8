"""A volume series' sampling decision, in two steps around the embedding:

1. :func:`start` (one transaction): read the series' slices, choose the sample
   (:func:`indexer.sampling.choose_slices`), take the chosen slices that have no vector
   yet off the queue (in progress: they are decoded and embedded now) and mark the held
   slices left out ``not_sampled`` (never decoded).
2. :func:`commit` (one transaction, after the embedding): the chosen slices' vectors in,
   the vectors of slices that an earlier sample chose but this one does not out (a late
   slice moved the sample), the queue marked, the sample recorded. The series' vector is
   never half the old sample and half the new one.

A decision taken while yet another slice arrived is stored all the same (a whole sample
of what was there) but leaves the series open for the next one.
"""

from __future__ import annotations

import dataclasses

from database import Connection, retrying
from indexer import queue, slices
from indexer.index import IndexSet, InstanceVector
from indexer.queue import WorkItem, WorkStateValues
from indexer.sampling import VolumeSampling, choose_slices

__all__ = ["HELD_REASON", "Decision", "commit", "not_sampled_reason", "start"]

#: the reason a held slice shows while its series is not complete
HELD_REASON = "waiting for its series to be complete (volume sampling)"


def not_sampled_reason(k: int) -> str:
    """The reason a slice left out of its series' sample shows."""
    return (
        f"not sampled: its volume series is embedded by {k} evenly spaced slices "
        "([indexer] slices_per_series; 0 embeds every slice)"
    )


@dataclasses.dataclass(frozen=True)
class Decision:
    """A decision under way: the series, its sample (in order along the slice axis), the
    slices taken to be embedded now, and those whose vectors the new sample drops."""

    series: slices.DueSeries
    sample: tuple[str, ...]
    taken: tuple[WorkItem, ...]
    drop: tuple[str, ...]
    reason: str
    #: slices asked for (0: every slice)
    k: int = 0
    #: held slices this decision moved on (taken, or marked not sampled)
    moved: int = 0

    @property
    def settled(self) -> bool:
        """Nothing to embed or drop: the sample was recorded by :func:`start`."""
        return not self.taken and not self.drop


def start(
    conn: Connection, due: slices.DueSeries, sampling: VolumeSampling, *, now: float,
    claimer: str | None = None,
) -> Decision:
    """Choose the sample of a complete series and move its slices on, the slices to
    embed claimed by ``claimer`` (one transaction of its own, run again after a
    collision with another worker's)."""
    return retrying(conn, lambda c: _start(c, due, sampling, now=now, claimer=claimer))


def _start(
    conn: Connection, due: slices.DueSeries, sampling: VolumeSampling, *, now: float,
    claimer: str | None,
) -> Decision:
    members = slices.members(conn, due.series_instance_uid)
    k = sampling.k(due.modality)
    sample = choose_slices(members, k)
    chosen = set(sample)
    uids = [m.sop_instance_uid for m in members]
    states = queue.states_of(conn, uids)
    held = queue.held(conn, uids)
    # chosen: those held or left out before are embedded now; done ones stay
    to_take = [
        u for u in sample
        if u in held or states.get(u) is WorkStateValues.NOT_SAMPLED
    ]
    taken = queue.take(conn, to_take, now=now, claimer=claimer)
    reason = not_sampled_reason(k)
    left_out = [u for u in uids if u in held and u not in chosen]
    queue.mark(conn, left_out, WorkStateValues.NOT_SAMPLED, reason)
    drop = tuple(
        u for u in uids if u not in chosen and states.get(u) is WorkStateValues.DONE
    )
    if not taken and not drop:
        slices.record_sample(conn, due.series_instance_uid, version=due.version,
                             sample=sample, k=k, now=now)
    return Decision(due, tuple(sample), tuple(taken), drop, reason, k=k,
                    moved=len(taken) + len(left_out))


def commit(
    index_set: IndexSet,
    decision: Decision,
    embedded: list[InstanceVector],
    *,
    identity: str,
    now: float,
    claimer: str | None = None,
) -> list[str]:
    """Store the embedded slices' vectors and drop those of the slices the sample left
    out, mark the queue and record the sample, in one transaction. Returns the UIDs
    stored (slices deleted while being embedded are not brought back)."""

    def bookkeeping(conn: Connection, stored: list[str]) -> None:
        queue.mark(conn, stored, WorkStateValues.DONE)
        states = queue.states_of(conn, decision.drop)
        queue.mark(conn, [u for u in decision.drop if states.get(u) is WorkStateValues.DONE],
                   WorkStateValues.NOT_SAMPLED, decision.reason)
        slices.record_sample(conn, decision.series.series_instance_uid,
                             version=decision.series.version, sample=decision.sample,
                             k=decision.k, now=now)

    return index_set.update(add=embedded, remove=list(decision.drop), identity=identity,
                            also=bookkeeping, claimer=claimer)
