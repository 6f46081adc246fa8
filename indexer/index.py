"""The index: one usearch HNSW index per level over the catalog's ``vectors`` table.

- Keys are ``vectors.key`` (the table's rowid). The table is the truth: each index is
  saved atomically (temporary file, then rename) with a sidecar ``<level>.json`` naming the
  model identity and the catalog *generation* it reflects; at start an index whose file is
  missing, unreadable or stale (generation, identity or dtype differ) is rebuilt from the
  table, without re-embedding.
- ``index_meta`` holds the model identity and dimension. Vectors of another identity are
  refused with :class:`~indexer.errors.ModelMismatch`; changing the model is the explicit
  :meth:`IndexSet.switch_model` (drops the vectors and queues every instance again).
- A series vector is the mean of its instances' vectors, a study vector the mean of its
  series' vectors, renormalised; both are recomputed as instances arrive or go.

An ``IndexSet`` may be used from several threads: each thread gets its own SQLite
connection, and the in-memory indexes are guarded by a lock.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer import queue
from indexer._levels import LevelValues
from indexer.errors import ModelMismatch

__all__ = ["DTypeValues", "IndexSet", "InstanceVector", "VectorRow", "connect"]

log = logging.getLogger(__name__)

_LEVELS = (LevelValues.INSTANCE, LevelValues.SERIES, LevelValues.STUDY)
_META_MODEL = "model_id"
_META_DIM = "dim"
_META_GENERATION = "generation"


class DTypeValues:
    """Scalar types the indexes may store (usearch names)."""

    F16 = "f16"
    F32 = "f32"
    BF16 = "bf16"
    I8 = "i8"
    ALL = (F16, F32, BF16, I8)


def connect(
    db_path: str | os.PathLike[str], *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """Open the catalog the way every component does (WAL, synchronous=FULL, busy_timeout)."""
    conn = sqlite3.connect(
        os.fspath(db_path), timeout=30.0, check_same_thread=check_same_thread
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


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


def _blob(v: npt.NDArray[Any]) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def _unblob(b: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(b, dtype="<f4").astype(np.float32)


def _unit(v: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    n = float(np.linalg.norm(v))
    return np.asarray(v / n if n > 0 else v, dtype=np.float32)


class IndexSet:
    """The three per-level HNSW indexes and the ``vectors`` table behind them.

    Open with :meth:`open`, which loads saved indexes or rebuilds stale ones.
    """

    def __init__(
        self,
        *,
        db_path: str | os.PathLike[str],
        index_dir: str | os.PathLike[str],
        dtype: str = DTypeValues.F16,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
    ) -> None:
        if dtype not in DTypeValues.ALL:
            raise ValueError(f"dtype must be one of {DTypeValues.ALL}, got {dtype!r}")
        for arg, value in (
            ("connectivity", connectivity),
            ("expansion_add", expansion_add),
            ("expansion_search", expansion_search),
        ):
            if value < 1:
                raise ValueError(f"{arg} must be at least 1, got {value}")
        self.db_path = Path(db_path)
        self.index_dir = Path(index_dir)
        self.dtype = dtype
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self._local = threading.local()
        self._lock = threading.RLock()
        self._indexes: dict[LevelValues, Any] = {}
        self._loaded_generation = -1
        self._bound: tuple[str, int] | None = None
        self.index_dir.mkdir(parents=True, exist_ok=True)
        queue.ensure_schema(self.connection())

    @classmethod
    def open(
        cls,
        *,
        db_path: str | os.PathLike[str],
        index_dir: str | os.PathLike[str],
        dtype: str = DTypeValues.F16,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        model_id: str | None = None,
        dim: int | None = None,
    ) -> IndexSet:
        """Open the index set: load each saved index, or rebuild it from the catalog.

        With ``model_id`` and ``dim`` (the loaded embedder's ``identity`` and ``dim``) an
        empty index is bound to that model, and an index of another model raises
        :class:`ModelMismatch`.
        """
        self = cls(
            db_path=db_path,
            index_dir=index_dir,
            dtype=dtype,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        if model_id is not None:
            if dim is None:
                raise ValueError("dim must be given with model_id")
            self.check_model(model_id, dim)
        self.load_or_rebuild()
        return self

    # -- connections and meta ---------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection to the catalog."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.db_path)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _meta(self, key: str) -> str | None:
        row = self.connection().execute(
            "SELECT value FROM index_meta WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    @property
    def identity(self) -> str | None:
        """The model identity the vectors belong to (None while the index is empty)."""
        return self._meta(_META_MODEL)

    @property
    def dim(self) -> int | None:
        value = self._meta(_META_DIM)
        return None if value is None else int(value)

    def generation(self) -> int:
        value = self._meta(_META_GENERATION)
        return 0 if value is None else int(value)

    def check_model(self, identity: str, dim: int) -> None:
        """Bind an empty index to a model, or check the model is the one bound.

        Raises :class:`ModelMismatch` when the index holds another model's vectors.
        """
        if self._bound == (identity, dim) and all(lv in self._indexes for lv in _LEVELS):
            return
        conn = self.connection()
        with _transaction(conn):
            current = self._meta(_META_MODEL)
            current_dim = self._meta(_META_DIM)
            if current is None:
                conn.execute(
                    "INSERT OR REPLACE INTO index_meta VALUES (?, ?), (?, ?)",
                    (_META_MODEL, identity, _META_DIM, str(dim)),
                )
            elif current != identity or int(current_dim or -1) != dim:
                raise ModelMismatch(
                    f"the index holds vectors of model {current} (dim {current_dim}); the "
                    f"loaded model is {identity} (dim {dim}). Changing the model needs an "
                    "explicit rebuild, which re-embeds every instance: stop the node and run "
                    "`precedent index rebuild` (with --model to name the new model)."
                )
        with self._lock:
            for level in _LEVELS:
                if level not in self._indexes:
                    self._indexes[level] = self._new_index(dim)
            self._bound = (identity, dim)

    def switch_model(self, identity: str, dim: int) -> int:
        """Drop every vector, bind the index to a new model and queue all instances again.

        Returns how many instances were queued again.
        """
        conn = self.connection()
        with _transaction(conn):
            conn.execute("DELETE FROM vectors")
            conn.execute(
                "INSERT OR REPLACE INTO index_meta VALUES (?, ?), (?, ?)",
                (_META_MODEL, identity, _META_DIM, str(dim)),
            )
            self._bump(conn)
        requeued = queue.requeue_all(conn)
        with self._lock:
            self._indexes = {level: self._new_index(dim) for level in _LEVELS}
            self._bound = (identity, dim)
        self.save()
        log.info("model switched to %s; %d instances queued again", identity, requeued)
        return requeued

    def _bump(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO index_meta VALUES (?, '1') ON CONFLICT (key) DO UPDATE"
            " SET value = CAST(value AS INTEGER) + 1",
            (_META_GENERATION,),
        )

    # -- usearch ----------------------------------------------------------------------

    def _new_index(self, dim: int) -> Any:
        from usearch.index import Index

        return Index(
            ndim=dim,
            metric="cos",
            dtype=self.dtype,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
            multi=False,
        )

    def _paths(self, level: LevelValues) -> tuple[Path, Path]:
        return self.index_dir / f"{level.value}.usearch", self.index_dir / f"{level.value}.json"

    def load_or_rebuild(self) -> list[LevelValues]:
        """Load each level's saved index if it matches the catalog, else rebuild it.

        Returns the levels that were rebuilt.
        """
        identity, dim, generation = self.identity, self.dim, self.generation()
        if identity is None or dim is None:
            with self._lock:
                self._indexes = {}
            return []
        rebuilt: list[LevelValues] = []
        with self._lock:
            for level in _LEVELS:
                index = self._load(level, identity, dim, generation)
                if index is None:
                    index = self._build(level, dim)
                    rebuilt.append(level)
                self._indexes[level] = index
            self._loaded_generation = generation
        if rebuilt:
            log.info("indexes rebuilt from the catalog: %s", [lv.value for lv in rebuilt])
            self.save()
        return rebuilt

    def _load(self, level: LevelValues, identity: str, dim: int, generation: int) -> Any | None:

        path, sidecar = self._paths(level)
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        expected = {"model_id": identity, "generation": generation, "dtype": self.dtype, "dim": dim}
        if any(meta.get(k) != v for k, v in expected.items()):
            log.info("index %s is stale (%s vs %s): rebuilding", level.value, meta, expected)
            return None
        index = self._new_index(dim)
        try:
            index.load(os.fspath(path))
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("index %s unreadable (%s): rebuilding", level.value, exc)
            return None
        if len(index) != meta.get("count"):
            return None
        return index

    def _build(self, level: LevelValues, dim: int) -> Any:
        index = self._new_index(dim)
        keys: list[int] = []
        vecs: list[npt.NDArray[np.float32]] = []
        cur = self.connection().execute(
            "SELECT key, vector FROM vectors WHERE level = ? ORDER BY key", (level.value,)
        )
        while True:
            rows = cur.fetchmany(65536)
            if not rows:
                break
            keys.extend(int(r[0]) for r in rows)
            vecs.extend(_unblob(r[1]) for r in rows)
            if len(keys) >= 65536:
                index.add(np.asarray(keys, dtype=np.uint64), np.stack(vecs))
                keys, vecs = [], []
        if keys:
            index.add(np.asarray(keys, dtype=np.uint64), np.stack(vecs))
        return index

    def rebuild(self) -> None:
        """Rebuild every level's index from the catalog's vectors (no re-embedding)."""
        dim = self.dim
        if dim is None:
            return
        generation = self.generation()
        with self._lock:
            self._indexes = {level: self._build(level, dim) for level in _LEVELS}
            self._loaded_generation = generation
        self.save()

    def save(self) -> None:
        """Save each index atomically (temporary file, fsync, rename), then its sidecar."""
        identity, dim = self.identity, self.dim
        with self._lock:
            generation = self._loaded_generation
            for level, index in self._indexes.items():
                path, sidecar = self._paths(level)
                tmp = path.with_suffix(".usearch.tmp")
                index.save(os.fspath(tmp))
                _fsync(tmp)
                os.replace(tmp, path)
                meta = {
                    "model_id": identity,
                    "generation": generation,
                    "dtype": self.dtype,
                    "dim": dim,
                    "count": len(index),
                    "saved_at": time.time(),
                }
                tmp_meta = sidecar.with_suffix(".json.tmp")
                tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
                _fsync(tmp_meta)
                os.replace(tmp_meta, sidecar)

    # -- writes -----------------------------------------------------------------------

    def add_instances(self, items: Sequence[InstanceVector], *, identity: str) -> list[int]:
        """Store instance vectors (upsert on UID), update their series and studies, and
        the indexes. Returns the instances' keys. One catalog transaction."""
        if not items:
            return []
        dim = int(items[0].vector.shape[-1])
        self.check_model(identity, dim)
        conn = self.connection()
        changed: list[tuple[LevelValues, int, npt.NDArray[np.float32]]] = []
        keys: list[int] = []
        with _transaction(conn):
            for it in items:
                vec = _unit(np.asarray(it.vector, dtype=np.float32).reshape(-1))
                if vec.shape[0] != dim:
                    raise ModelMismatch(f"vector of dim {vec.shape[0]} for an index of dim {dim}")
                key = self._upsert(
                    conn, LevelValues.INSTANCE, it.sop_instance_uid, it.series_instance_uid,
                    it.study_instance_uid, it.patient_id, it.modality, it.body_part,
                    it.study_date, identity, vec,
                )
                keys.append(key)
                changed.append((LevelValues.INSTANCE, key, vec))
            series = {(it.series_instance_uid, it.study_instance_uid) for it in items}
            changed += self._refresh_parents(conn, series, identity)
            self._bump(conn)
            generation = self._meta(_META_GENERATION)
        self._apply(changed, [], int(generation or 0))
        return keys

    def delete_instance(self, sop_instance_uid: str) -> bool:
        """Remove an instance's vector, and update (or remove) its series and study."""
        conn = self.connection()
        removed: list[tuple[LevelValues, int]] = []
        changed: list[tuple[LevelValues, int, npt.NDArray[np.float32]]] = []
        with _transaction(conn):
            row = conn.execute(
                "SELECT key, parent_uid, study_instance_uid, model_id FROM vectors"
                " WHERE level = 'instance' AND uid = ?",
                (sop_instance_uid,),
            ).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM vectors WHERE key = ?", (row[0],))
            removed.append((LevelValues.INSTANCE, int(row[0])))
            refreshed = self._refresh_parents(conn, {(str(row[1]), str(row[2]))}, str(row[3]))
            for level, key, vec in refreshed:
                (changed.append((level, key, vec)) if vec.size else removed.append((level, key)))
            self._bump(conn)
            generation = self._meta(_META_GENERATION)
        self._apply(changed, removed, int(generation or 0))
        return True

    def _upsert(
        self,
        conn: sqlite3.Connection,
        level: LevelValues,
        uid: str,
        parent_uid: str | None,
        study_uid: str,
        patient_id: str | None,
        modality: str | None,
        body_part: str | None,
        study_date: str | None,
        identity: str,
        vec: npt.NDArray[np.float32],
    ) -> int:
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
                level.value, uid, parent_uid, study_uid, patient_id, modality, body_part,
                study_date, identity, _blob(vec),
            ),
        ).fetchone()
        return int(row[0])

    def _refresh_parents(
        self, conn: sqlite3.Connection, series: Iterable[tuple[str, str]], identity: str
    ) -> list[tuple[LevelValues, int, npt.NDArray[np.float32]]]:
        """Recompute series means, then study means; an empty vector marks a removal."""
        out: list[tuple[LevelValues, int, npt.NDArray[np.float32]]] = []
        studies: set[str] = set()
        for series_uid, study_uid in series:
            studies.add(study_uid)
            out += self._refresh_one(
                conn, LevelValues.SERIES, series_uid, study_uid, LevelValues.INSTANCE, identity
            )
        for study_uid in studies:
            out += self._refresh_one(
                conn, LevelValues.STUDY, study_uid, None, LevelValues.SERIES, identity
            )
        return out

    def _refresh_one(
        self,
        conn: sqlite3.Connection,
        level: LevelValues,
        uid: str,
        parent_uid: str | None,
        child_level: LevelValues,
        identity: str,
    ) -> list[tuple[LevelValues, int, npt.NDArray[np.float32]]]:
        children = conn.execute(
            "SELECT vector, study_instance_uid, patient_id, modality, body_part, study_date"
            " FROM vectors WHERE level = ? AND parent_uid = ?",
            (child_level.value, uid),
        ).fetchall()
        if not children:
            row = conn.execute(
                "DELETE FROM vectors WHERE level = ? AND uid = ? RETURNING key", (level.value, uid)
            ).fetchone()
            return [] if row is None else [(level, int(row[0]), np.zeros(0, np.float32))]
        vec = _unit(np.mean(np.stack([_unblob(c[0]) for c in children]), axis=0))
        first = children[0]
        modality = _joined(c[3] for c in children)
        body_part = _joined(c[4] for c in children)
        key = self._upsert(
            conn, level, uid, parent_uid, str(first[1]), first[2], modality, body_part,
            first[5], identity, vec,
        )
        return [(level, key, vec)]

    def _apply(
        self,
        changed: Sequence[tuple[LevelValues, int, npt.NDArray[np.float32]]],
        removed: Sequence[tuple[LevelValues, int]],
        generation: int,
    ) -> None:
        with self._lock:
            for level, key in removed:
                index = self._indexes.get(level)
                if index is not None and key in index:
                    index.remove(key)
            for level, key, vec in changed:
                index = self._indexes[level]
                if key in index:
                    index.remove(key)
                index.add(key, vec)
            self._loaded_generation = generation

    # -- reads ------------------------------------------------------------------------

    def count(self, level: LevelValues | str) -> int:
        """How many vectors the in-memory index of ``level`` holds."""
        index = self._indexes.get(LevelValues(level))
        return 0 if index is None else len(index)

    def ann(
        self, level: LevelValues, vector: npt.NDArray[np.float32], count: int, *,
        exact: bool = False,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """Raw usearch search: keys and cosine *distances* (1 - similarity), best first."""
        with self._lock:
            index = self._indexes.get(level)
            if index is None or len(index) == 0:
                return np.zeros(0, np.uint64), np.zeros(0, np.float32)
            m = index.search(np.asarray(vector, dtype=np.float32), count, exact=exact)
        return np.asarray(m.keys, np.uint64), np.asarray(m.distances, np.float32)

    def get_vector(self, level: LevelValues | str, uid: str) -> npt.NDArray[np.float32] | None:
        """The stored (float32) vector of a study, series or instance UID."""
        row = self.connection().execute(
            "SELECT vector FROM vectors WHERE level = ? AND uid = ?",
            (LevelValues(level).value, uid),
        ).fetchone()
        return None if row is None else _unblob(row[0])

    def get_vectors(
        self, level: LevelValues | str, uids: Sequence[str]
    ) -> npt.NDArray[np.float32]:
        """Stored vectors of the given UIDs that exist (missing ones are left out)."""
        vecs = [v for v in (self.get_vector(level, u) for u in uids) if v is not None]
        dim = self.dim or 0
        return np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)

    def rows(self, keys: Sequence[int]) -> dict[int, VectorRow]:
        """The rows (without vectors) of the given keys."""
        out: dict[int, VectorRow] = {}
        conn = self.connection()
        for i in range(0, len(keys), 900):
            chunk = [int(k) for k in keys[i : i + 900]]
            marks = ",".join("?" * len(chunk))
            for r in conn.execute(
                "SELECT key, level, uid, parent_uid, study_instance_uid, patient_id, modality,"
                f" body_part, study_date FROM vectors WHERE key IN ({marks})",
                chunk,
            ):
                out[int(r[0])] = VectorRow(
                    int(r[0]), LevelValues(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8]
                )
        return out


def _joined(values: Iterable[object]) -> str | None:
    """Distinct non-empty values joined with backslash (the DICOM multi-value separator)."""
    seen: list[str] = []
    for v in values:
        for part in str(v or "").split("\\"):
            if part and part not in seen:
                seen.append(part)
    return "\\".join(sorted(seen)) if seen else None


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on error) on a connection not in one."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.commit()
        else:
            self.conn.rollback()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
