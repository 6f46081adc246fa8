"""A stored study, series or instance as a query: found in the catalog, and its vector
taken from the index (no model time), or the reason it has none."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from indexer import LevelValues
from node.errors import NotIndexed, UnknownObject

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


def find_stored_object(conn: sqlite3.Connection, *, study: str, series: str | None = None,
                       sop: str | None = None) -> StoredObject:
    """The object the route names, or :class:`UnknownObject` (a wrong parent counts)."""
    row = conn.execute("SELECT patient_id FROM studies WHERE study_instance_uid = ?",
                       (study,)).fetchone()
    if row is None:
        raise UnknownObject(f"study {study} is not on this node")
    patient_id = row[0]
    if series is None:
        return StoredObject(LevelValues.STUDY, study, study, patient_id)
    found = conn.execute(
        "SELECT 1 FROM series WHERE series_instance_uid = ? AND study_instance_uid = ?",
        (series, study),
    ).fetchone()
    if found is None:
        raise UnknownObject(f"series {series} is not in study {study} on this node")
    if sop is None:
        return StoredObject(LevelValues.SERIES, series, study, patient_id)
    found = conn.execute(
        "SELECT 1 FROM instances WHERE sop_instance_uid = ? AND series_instance_uid = ?",
        (sop, series),
    ).fetchone()
    if found is None:
        raise UnknownObject(f"instance {sop} is not in series {series} on this node")
    return StoredObject(LevelValues.INSTANCE, sop, study, patient_id)


def _not_indexed_reason(conn: sqlite3.Connection, obj: StoredObject) -> str:
    column = {LevelValues.STUDY: "study_instance_uid", LevelValues.SERIES: "series_instance_uid",
              LevelValues.INSTANCE: "sop_instance_uid"}[obj.level]
    # TODO(indexer-api): the work states of the object's instances, and the first reason
    # given, through the indexer's queue functions instead of SQL on its `work` table.
    states = dict(conn.execute(
        f"""SELECT w.state, count(*) FROM instances i JOIN work w
            ON w.sop_instance_uid = i.sop_instance_uid WHERE i.{column} = ?
            GROUP BY w.state""", (obj.uid,)).fetchall())
    waiting = states.get("pending", 0) + states.get("in_progress", 0)
    if waiting:
        return (f"{obj.level.value} {obj.uid} is not indexed yet ({waiting} instance(s) "
                "waiting on the work queue); try again shortly")
    if states.get("skipped") or states.get("failed"):
        reason = conn.execute(
            f"""SELECT w.reason FROM instances i JOIN work w
                ON w.sop_instance_uid = i.sop_instance_uid
                WHERE i.{column} = ? AND w.reason IS NOT NULL LIMIT 1""", (obj.uid,)
        ).fetchone()
        why = f": {reason[0]}" if reason and reason[0] else ""
        return (f"{obj.level.value} {obj.uid} has no picture the model can use, so it has "
                f"no vector{why}")
    return f"{obj.level.value} {obj.uid} has no vector in the index"


def stored_vector(index_set: IndexSet, conn: sqlite3.Connection,
                  obj: StoredObject) -> npt.NDArray[np.float32]:
    """The object's stored vector, or :class:`NotIndexed` saying why there is none."""
    vector = index_set.get_vector(obj.level, obj.uid)
    if vector is None:
        raise NotIndexed(_not_indexed_reason(conn, obj))
    return vector
