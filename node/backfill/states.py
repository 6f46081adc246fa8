"""The states of a backfill and of its plan's rows (the plan tables hold these values)."""

from __future__ import annotations

from enum import Enum

__all__ = ["JobStateValues", "PlanStateValues", "RetrieveModeValues"]


class JobStateValues(str, Enum):
    """A backfill as a whole."""

    RUNNING = "running"  #: working, or held (outside its window, disk low, PACS down)
    PAUSED = "paused"  #: by an admin; ``resume`` goes on
    CANCELLED = "cancelled"  #: by an admin; final
    DONE = "done"  #: every window queried and every study done or failed

    @property
    def final(self) -> bool:
        return self in (JobStateValues.CANCELLED, JobStateValues.DONE)


class PlanStateValues(str, Enum):
    """A date window (being queried) or a study (being pulled)."""

    PENDING = "pending"  #: to do (``not_before`` may hold it back for a retry)
    MOVING = "moving"  #: in hand: a window being queried, a study being pulled
    DONE = "done"  #: queried; or the node holds every wanted instance
    PARTIAL = "partial"  #: some instances did not arrive; retried, only what is missing
    FAILED = "failed"  #: gave up after the attempts allowed (``reason`` says why)

    @property
    def open(self) -> bool:
        return self in (PlanStateValues.PENDING, PlanStateValues.MOVING,
                        PlanStateValues.PARTIAL)


class RetrieveModeValues(str, Enum):
    """How a backfill's studies come to the node."""

    MOVE = "move"  #: C-MOVE to the node's own AE title
    GET = "get"  #: C-GET over the backfill's association
    WADO = "wado"  #: WADO-RS, stored through the same ingest as STOW-RS
