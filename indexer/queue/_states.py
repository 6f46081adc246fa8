"""The work queue's states, the ``not_before`` of a held slice, a claimed item, and the
helpers every queue module shares."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Iterable, Iterator

from database import Connection, transaction
from indexer.errors import QueueError

__all__ = ["HELD", "WorkItem", "WorkStateValues"]


class WorkStateValues(str, enum.Enum):
    """The state of one instance in the work queue."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_SAMPLED = "not_sampled"  #: a slice of a volume left out of its series' sample


_PENDING = WorkStateValues.PENDING.value
_IN_PROGRESS = WorkStateValues.IN_PROGRESS.value
_SKIPPED = WorkStateValues.SKIPPED.value
_FAILED = WorkStateValues.FAILED.value
_NOT_SAMPLED = WorkStateValues.NOT_SAMPLED.value
#: ``not_before`` of a held slice: never claimed; its series' decision moves it on
HELD = 1e18
#: UIDs per statement when a call names many (below SQLite's 999 parameters)
_CHUNK = 900


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """A claimed instance: its UID, its path relative to ``data_dir``, claims so far, and
    when it arrived (unix seconds)."""

    sop_instance_uid: str
    path: str
    attempts: int
    enqueued_at: float = 0.0


def _refuse_open_transaction(conn: Connection, what: str) -> None:
    if conn.in_transaction:
        raise QueueError(f"{what} opens its own transaction; call it outside one")


@contextlib.contextmanager
def _own_transaction(conn: Connection, what: str) -> Iterator[None]:
    _refuse_open_transaction(conn, what)
    with transaction(conn):
        yield


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
