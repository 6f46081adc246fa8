"""A stored study, series or instance as a query: found in the catalog, and its vector
taken from the index (no model time), or the reason it has none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from database import Connection
from indexer import LevelValues, queue
from node.errors import NotIndexed, UnknownObject
from node.storage import holdings

if TYPE_CHECKING:
    from indexer.index import IndexSet

__all__ = ["StoredObject", "find_stored_object", "stored_vector"]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A study, series or instance on the node, as a query."""

    level: LevelValues
    uid: str
    study_instance_uid: str
    patient_id: str | None


def find_stored_object(conn: Connection, *, study: str, series: str | None = None,
                       sop: str | None = None) -> StoredObject:
    """The object the route names, or :class:`UnknownObject` (a wrong parent counts)."""
    record = holdings.study_record(conn, study)
    if record is None:
        raise UnknownObject(f"study {study} is not on this node")
    patient_id = record["patient_id"]
    if series is None:
        return StoredObject(LevelValues.STUDY, study, study, patient_id)
    if not holdings.series_in_study(conn, series, study):
        raise UnknownObject(f"series {series} is not in study {study} on this node")
    if sop is None:
        return StoredObject(LevelValues.SERIES, series, study, patient_id)
    if not holdings.instance_in_series(conn, sop, series):
        raise UnknownObject(f"instance {sop} is not in series {series} on this node")
    return StoredObject(LevelValues.INSTANCE, sop, study, patient_id)


def _not_indexed_reason(conn: Connection, obj: StoredObject) -> str:
    column = {LevelValues.STUDY: "study_instance_uid", LevelValues.SERIES: "series_instance_uid",
              LevelValues.INSTANCE: "sop_instance_uid"}[obj.level]
    sops = holdings.sop_instance_uids(conn, **{column: obj.uid})
    counts = queue.counts(conn, sops)
    if counts.waiting:
        return (f"{obj.level.value} {obj.uid} is not indexed yet ({counts.waiting} instance(s) "
                "waiting on the work queue); try again shortly")
    if obj.level is LevelValues.INSTANCE and counts.not_sampled:
        reason = next(iter(counts.not_sampled_reasons), "not sampled")
        return (f"instance {obj.uid} has no vector of its own ({reason}); ask for the "
                "similar cases of its series or study")
    if counts.skipped or counts.failed:
        reason = next((r for r in (*counts.skipped_reasons, *counts.failed_reasons) if r), "")
        why = f": {reason}" if reason else ""
        return (f"{obj.level.value} {obj.uid} has no picture the model can use, so it has "
                f"no vector{why}")
    return f"{obj.level.value} {obj.uid} has no vector in the index"


def stored_vector(index_set: IndexSet, conn: Connection,
                  obj: StoredObject) -> npt.NDArray[np.float32]:
    """The object's stored vector, or :class:`NotIndexed` saying why there is none."""
    vector = index_set.get_vector(obj.level, obj.uid)
    if vector is None:
        raise NotIndexed(_not_indexed_reason(conn, obj))
    return vector
