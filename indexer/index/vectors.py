"""The ``vectors`` table: one row per study, series and instance vector.

A row holds the object's UID, its parent's (the series of an instance, the study of a
series), its study, the attributes search filters on, the model identity and the vector
(little-endian float32, unit length). ``key`` is the row's integer primary key and the
usearch key of the vector.

Every function takes the caller's connection. Writes (:func:`upsert`, :func:`delete_row`,
:func:`delete_all`) run inside the caller's transaction and never commit; reads run
anywhere. This is the only module that writes SQL on ``vectors``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from database import Connection, dialect_of, stream
from indexer._levels import LevelValues
from indexer.filters import SearchFilters

__all__ = [
    "InstanceVector",
    "StoredVector",
    "VectorRow",
    "best_instance",
    "best_instances",
    "counts_by_level",
    "delete_all",
    "delete_row",
    "from_blob",
    "get_vector",
    "in_studies",
    "instance_parents",
    "keys_passing",
    "members",
    "patients",
    "rows",
    "scan",
    "to_blob",
    "unit",
    "upsert",
    "vectors_of_keys",
]

#: keys or UIDs per statement when a call names many (below SQLite's 999 parameters)
_CHUNK = 900

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class InstanceVector:
    """An instance's embedding and the attributes search filters on."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    vector: npt.NDArray[np.float32]
    patient_id: str | None = None
    modality: str | None = None
    body_part: str | None = None
    study_date: str | None = None  # YYYYMMDD


@dataclasses.dataclass(frozen=True)
class VectorRow:
    """A row of the ``vectors`` table (without the vector)."""

    key: int
    level: LevelValues
    uid: str
    parent_uid: str | None
    study_instance_uid: str
    patient_id: str | None
    modality: str | None
    body_part: str | None
    study_date: str | None


@dataclasses.dataclass(frozen=True)
class StoredVector:
    """A stored vector with where it belongs: its UID, study and parent."""

    uid: str
    study_instance_uid: str
    parent_uid: str | None
    vector: npt.NDArray[np.float32]


def to_blob(v: npt.NDArray[Any]) -> bytes:
    """A vector as the table stores it (little-endian float32)."""
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def from_blob(b: bytes) -> npt.NDArray[np.float32]:
    """A stored vector as a float32 array."""
    return np.frombuffer(b, dtype="<f4").astype(np.float32)


def unit(v: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """``v`` scaled to unit length (a zero vector stays zero)."""
    n = float(np.linalg.norm(v))
    return np.asarray(v / n if n > 0 else v, dtype=np.float32)


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(values: Iterable[_T]) -> Iterator[list[_T]]:
    """``values`` in lists of at most :data:`_CHUNK` (one statement's parameters each)."""
    items = list(values)
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


# -- writes (inside the caller's transaction) -------------------------------------------


def upsert(
    conn: Connection,
    *,
    level: LevelValues,
    uid: str,
    parent_uid: str | None,
    study_instance_uid: str,
    patient_id: str | None,
    modality: str | None,
    body_part: str | None,
    study_date: str | None,
    model_id: str,
    vector: npt.NDArray[np.float32],
) -> int:
    """Insert or replace the vector of (``level``, ``uid``); returns its key (kept on
    replace, so the usearch key stays the same)."""
    row = conn.execute(
        "INSERT INTO vectors (level, uid, parent_uid, study_instance_uid, patient_id,"
        " modality, body_part, study_date, model_id, vector)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (level, uid) DO UPDATE SET parent_uid = excluded.parent_uid,"
        " study_instance_uid = excluded.study_instance_uid,"
        " patient_id = excluded.patient_id, modality = excluded.modality,"
        " body_part = excluded.body_part, study_date = excluded.study_date,"
        " model_id = excluded.model_id, vector = excluded.vector RETURNING key",
        (
            level.value, uid, parent_uid, study_instance_uid, patient_id, modality, body_part,
            study_date, model_id, to_blob(vector),
        ),
    ).fetchone()
    return int(row[0])


def delete_row(conn: Connection, level: LevelValues, uid: str) -> int | None:
    """Delete the vector of (``level``, ``uid``); returns its key, None if there was none."""
    row = conn.execute(
        "DELETE FROM vectors WHERE level = ? AND uid = ? RETURNING key", (level.value, uid)
    ).fetchone()
    return None if row is None else int(row[0])


def delete_all(conn: Connection) -> None:
    """Delete every vector (a model change)."""
    conn.execute("DELETE FROM vectors")


# -- reads ------------------------------------------------------------------------------


def instance_parents(
    conn: Connection, sop_instance_uids: Iterable[str]
) -> dict[str, tuple[str, str, str]]:
    """For the instances that have a vector: (series UID, study UID, model identity)."""
    out: dict[str, tuple[str, str, str]] = {}
    for chunk in _chunks(sop_instance_uids):
        for uid, parent, study, model_id in conn.execute(
            "SELECT uid, parent_uid, study_instance_uid, model_id FROM vectors"
            f" WHERE level = ? AND uid IN ({_marks(len(chunk))})",
            [LevelValues.INSTANCE.value, *chunk],
        ):
            out[str(uid)] = (str(parent), str(study), str(model_id))
    return out


def members(conn: Connection, child_level: LevelValues, parent_uid: str) -> list[Any]:
    """The rows of ``child_level`` under ``parent_uid``: (vector, study UID, patient ID,
    modality, body part, study date) each."""
    return conn.execute(
        "SELECT vector, study_instance_uid, patient_id, modality, body_part, study_date"
        " FROM vectors WHERE level = ? AND parent_uid = ?",
        (child_level.value, parent_uid),
    ).fetchall()


def get_vector(
    conn: Connection, level: LevelValues, uid: str
) -> npt.NDArray[np.float32] | None:
    """The stored vector of a study, series or instance UID, None if it has none."""
    row = conn.execute(
        "SELECT vector FROM vectors WHERE level = ? AND uid = ?", (level.value, uid)
    ).fetchone()
    return None if row is None else from_blob(row[0])


def rows(conn: Connection, keys: Sequence[int]) -> dict[int, VectorRow]:
    """The rows (without vectors) of the given keys."""
    out: dict[int, VectorRow] = {}
    for chunk in _chunks(int(k) for k in keys):
        for r in conn.execute(
            "SELECT key, level, uid, parent_uid, study_instance_uid, patient_id, modality,"
            f" body_part, study_date FROM vectors WHERE key IN ({_marks(len(chunk))})",
            chunk,
        ):
            out[int(r[0])] = VectorRow(
                int(r[0]), LevelValues(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8]
            )
    return out


def keys_passing(conn: Connection, level: LevelValues, filters: SearchFilters) -> set[int]:
    """The keys of ``level`` whose rows pass ``filters`` (no vector is read)."""
    where, params = filters.sql(dialect_of(conn))
    cur = conn.execute(
        f"SELECT key, uid FROM vectors WHERE level = ? AND {where}", [level.value, *params]
    )
    return {int(key) for key, uid in cur if uid not in filters.exclude_uids}


def vectors_of_keys(
    conn: Connection, keys: Sequence[int]
) -> tuple[list[int], npt.NDArray[np.float32]]:
    """The keys that exist among ``keys``, and their vectors stacked in the same order."""
    found: list[int] = []
    vecs: list[npt.NDArray[np.float32]] = []
    for chunk in _chunks(int(k) for k in keys):
        for key, blob in conn.execute(
            f"SELECT key, vector FROM vectors WHERE key IN ({_marks(len(chunk))})", chunk
        ):
            found.append(int(key))
            vecs.append(np.frombuffer(blob, dtype="<f4"))
    if not found:
        return [], np.zeros((0, 0), np.float32)
    return found, np.stack(vecs).astype(np.float32)


def best_instance(
    conn: Connection, level: LevelValues, uid: str, query: npt.NDArray[np.float32]
) -> str | None:
    """The instance of a study or series whose vector is closest to the unit ``query``
    (an instance is its own best instance); None when it has no instance vector."""
    return best_instances(conn, level, [uid], query).get(uid)


def best_instances(
    conn: Connection, level: LevelValues, uids: Sequence[str], query: npt.NDArray[np.float32]
) -> dict[str, str]:
    """:func:`best_instance` of several studies or series of ``level`` at once (one read
    per chunk of UIDs, one product): UID → its best instance; those with no instance
    vector are left out."""
    if level is LevelValues.INSTANCE:
        return {uid: uid for uid in uids}
    column = "study_instance_uid" if level is LevelValues.STUDY else "parent_uid"
    owners: list[str] = []
    sops: list[str] = []
    blobs: list[bytes] = []
    for chunk in _chunks(dict.fromkeys(uids)):
        for owner, sop, blob in conn.execute(
            f"SELECT {column}, uid, vector FROM vectors WHERE level = ? AND {column} IN "
            f"({_marks(len(chunk))})",
            (LevelValues.INSTANCE.value, *chunk),
        ):
            owners.append(str(owner))
            sops.append(str(sop))
            blobs.append(blob)
    if not blobs:
        return {}
    sims = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1) @ query
    best: dict[str, tuple[float, str]] = {}
    for owner, sop, sim in zip(owners, sops, sims.tolist(), strict=True):
        if owner not in best or sim > best[owner][0]:
            best[owner] = (sim, sop)
    return {owner: sop for owner, (_, sop) in best.items()}


def in_studies(
    conn: Connection,
    level: LevelValues,
    study_instance_uids: Sequence[str],
    filters: SearchFilters,
) -> list[StoredVector]:
    """The vectors of ``level`` that belong to these studies and pass ``filters``."""
    out: list[StoredVector] = []
    where, params = filters.sql(dialect_of(conn))
    for chunk in _chunks(study_instance_uids):
        for uid, study, parent, blob in conn.execute(
            "SELECT uid, study_instance_uid, parent_uid, vector FROM vectors"
            f" WHERE level = ? AND study_instance_uid IN ({_marks(len(chunk))}) AND {where}",
            [level.value, *chunk, *params],
        ):
            if uid not in filters.exclude_uids:
                out.append(StoredVector(str(uid), str(study), parent, from_blob(blob)))
    return out


def patients(conn: Connection, level: LevelValues) -> dict[str, str | None]:
    """UID → patient ID of every vector of ``level``."""
    return {
        str(uid): pid
        for uid, pid in conn.execute(
            "SELECT uid, patient_id FROM vectors WHERE level = ?", (level.value,)
        )
    }


def counts_by_level(conn: Connection) -> dict[LevelValues, int]:
    """How many vectors the table holds at each level (every level, zero included)."""
    found = {
        str(level): int(n)
        for level, n in conn.execute("SELECT level, count(*) FROM vectors GROUP BY level")
    }
    return {level: found.get(level.value, 0) for level in LevelValues}


def scan(
    conn: Connection, level: LevelValues, *, batch: int = 65536
) -> Iterator[tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]]:
    """Every vector of ``level``, key order, in batches of keys and stacked vectors (a
    stream: the rows are never all held at once)."""
    rows = stream(conn, "SELECT key, vector FROM vectors WHERE level = ? ORDER BY key",
                  (level.value,), size=min(batch, 10_000))
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == batch:
            yield _stacked(chunk)
            chunk = []
    if chunk:
        yield _stacked(chunk)


def _stacked(chunk: list[Any]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
    keys = np.asarray([int(r[0]) for r in chunk], dtype=np.uint64)
    return keys, np.stack([from_blob(r[1]) for r in chunk])
