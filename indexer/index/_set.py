"""``IndexSet``: the three per-level usearch indexes, kept in step with the ``vectors``
table behind them.

An ``IndexSet`` may be used from several threads: each thread gets its own catalog
connection, and the in-memory indexes are guarded by a lock. Its own writes are applied
at once; on PostgreSQL the writes of other processes are applied by
:meth:`IndexSet.follow_changes` (a serving process calls it every second or so).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import database
from database import Connection, ThreadConnections, retrying
from indexer import queue
from indexer._enums import to_member
from indexer._levels import LevelValues
from indexer._schema import ensure_schema
from indexer.errors import ModelMismatch
from indexer.index import _files, _log, _meta, vectors
from indexer.index._changes import VectorChanges, replace_instances, store_instances
from indexer.index._changes import delete_instances as _delete_instances
from indexer.index._files import DTypeValues, HnswSettings
from indexer.index._follow import IndexFollowing

__all__ = ["IndexSet"]

log = logging.getLogger(__name__)

_LEVELS = (LevelValues.INSTANCE, LevelValues.SERIES, LevelValues.STUDY)


class IndexSet(IndexFollowing):
    """The three per-level HNSW indexes and the ``vectors`` table behind them.

    Open with :meth:`open`, which loads saved indexes or rebuilds stale ones. ``dtype`` is
    every level's scalar type unless ``level_dtypes`` names another for a level (e.g. i8
    for the instance and series levels, f16 for studies).
    """

    def __init__(
        self,
        *,
        catalog: database.Target,
        index_dir: str | os.PathLike[str],
        dtype: DTypeValues | str = DTypeValues.F16,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        level_dtypes: Mapping[LevelValues | str, DTypeValues | str] | None = None,
    ) -> None:
        self.hnsw = HnswSettings(
            dtype=to_member(DTypeValues, dtype, name="dtype"),
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        chosen = {
            to_member(LevelValues, lv, name="level_dtypes key"):
            to_member(DTypeValues, dt, name=f"level_dtypes[{lv!r}]")
            for lv, dt in (level_dtypes or {}).items()
        }
        self._hnsw = {
            lv: HnswSettings(chosen.get(lv, self.hnsw.dtype), connectivity, expansion_add,
                             expansion_search)
            for lv in _LEVELS
        }
        self.catalog = catalog
        self.index_dir = Path(index_dir)
        self._connections = ThreadConnections(self.catalog, schema=ensure_schema)
        self._lock = threading.RLock()
        #: held by :meth:`save` and :meth:`apply` only: a save (half a second or so at
        #: 100,000 vectors) excludes changes to the indexes, not searches
        self._write_lock = threading.Lock()
        self._indexes: dict[LevelValues, Any] = {}
        #: SQLite: the catalog generation the indexes reflect; PostgreSQL: the change
        #: log horizon (every transaction below it is applied)
        self._loaded_generation = -1
        #: the model the in-memory indexes hold (None: none loaded)
        self._model: str | None = None
        self._bound: tuple[str, int] | None = None
        #: one follower at a time (a thread's poll, a load)
        self._follow_lock = threading.Lock()
        self.index_dir.mkdir(parents=True, exist_ok=True)
        #: whether the indexes follow the change log (PostgreSQL) or a generation
        self.follows = database.dialect_for(catalog) is database.DialectValues.POSTGRESQL

    @property
    def dtype(self) -> DTypeValues:
        return self.hnsw.dtype

    def level_dtype(self, level: LevelValues | str) -> DTypeValues:
        """The scalar type the index of ``level`` stores."""
        return self._hnsw[LevelValues(level)].dtype

    @classmethod
    def open(
        cls,
        *,
        catalog: database.Target,
        index_dir: str | os.PathLike[str],
        dtype: DTypeValues | str = DTypeValues.F16,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        level_dtypes: Mapping[LevelValues | str, DTypeValues | str] | None = None,
        model_id: str | None = None,
        dim: int | None = None,
    ) -> IndexSet:
        """Open the index set: load each saved index, or rebuild it from the catalog.

        With ``model_id`` and ``dim`` (the loaded embedder's ``identity`` and ``dim``) an
        empty index is bound to that model, and an index of another model raises
        :class:`ModelMismatch`.
        """
        self = cls(
            catalog=catalog,
            index_dir=index_dir,
            dtype=dtype,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
            level_dtypes=level_dtypes,
        )
        if model_id is not None:
            if dim is None:
                raise ValueError("dim must be given with model_id")
            self.check_model(model_id, dim)
        self.load_or_rebuild()
        return self

    # -- connections and model identity ----------------------------------------------

    def connection(self) -> Connection:
        """This thread's connection to the catalog."""
        return self._connections.get()

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._connections.close()

    @property
    def identity(self) -> str | None:
        """The model identity the vectors belong to (None while the index is empty)."""
        return _meta.model_identity(self.connection())

    def generation(self) -> int:
        """SQLite: how many transactions have changed ``vectors``. PostgreSQL: the change
        log's horizon now (grows as vectors change)."""
        conn = self.connection()
        return _log.current_horizon(conn) if self.follows else _meta.generation(conn)

    def check_model(self, identity: str, dim: int) -> None:
        """Bind an empty index to a model, or check the model is the one bound.

        Raises :class:`ModelMismatch` when the index holds another model's vectors.
        """
        if self._bound == (identity, dim) and all(lv in self._indexes for lv in _LEVELS):
            return
        def bind(conn: Connection) -> None:  # run again if another process binds at once
            current, current_dim = _meta.model_identity(conn), _meta.model_dim(conn)
            if current is None:
                _meta.bind_model(conn, identity, dim)
            elif current != identity or current_dim != dim:
                raise ModelMismatch(
                    f"the index holds vectors of model {current} (dim {current_dim}); the "
                    f"loaded model is {identity} (dim {dim}). Changing the model needs an "
                    "explicit rebuild, which re-embeds every instance: stop the node and run "
                    "`precedent index rebuild` (with --model to name the new model)."
                )

        retrying(self.connection(), bind)
        with self._lock:
            for level in _LEVELS:
                if level not in self._indexes:
                    self._indexes[level] = self._hnsw[level].new_index(dim)
            self._bound = (identity, dim)
            self._model = identity

    def switch_model(self, identity: str, dim: int) -> int:
        """Drop every vector, bind the index to a new model and queue all instances again.

        Returns how many instances were queued again.
        """
        conn = self.connection()
        horizon = _log.current_horizon(conn) if self.follows else 0

        def work(c: Connection) -> int:
            _log.record_all(c)
            vectors.delete_all(c)
            _meta.bind_model(c, identity, dim)
            return _log.record(c, [], [])

        generation = retrying(conn, work)
        requeued = queue.requeue_all(conn)
        with self._lock:
            self._indexes = {level: self._hnsw[level].new_index(dim) for level in _LEVELS}
            self._bound = (identity, dim)
            self._model = identity
            self._loaded_generation = horizon if self.follows else generation
        self.save()
        log.info("model switched to %s; %d instances queued again", identity, requeued)
        return requeued

    # -- the files --------------------------------------------------------------------

    def load_or_rebuild(self) -> list[LevelValues]:
        """Load each level's saved index if it matches the catalog, else rebuild it; on
        PostgreSQL, then bring them up to date from the change log.

        Returns the levels that were rebuilt.
        """
        conn = self.connection()
        with self._follow_lock:
            # PostgreSQL: taken before the table is read, so what a rebuild misses is
            # at or above it and replayed from the log
            start = _log.current_horizon(conn) if self.follows else _meta.generation(conn)
            identity, dim = self.identity, self.dim
            if identity is None or dim is None:
                with self._lock:
                    self._indexes, self._model, self._loaded_generation = {}, None, start
                return []
            floor = _log.pruned_below(conn) if self.follows else 0
            rebuilt: list[LevelValues] = []
            horizons = [start]
            with self._lock:
                for level in _LEVELS:
                    loaded = _files.load(
                        self.index_dir, level, self._hnsw[level], identity=identity, dim=dim,
                        fresh=(lambda g: g >= floor) if self.follows else (lambda g: g == start),
                    )
                    if loaded is None:
                        index = _files.build(conn, level, self._hnsw[level], dim)
                        rebuilt.append(level)
                    else:
                        index, saved = loaded
                        horizons.append(saved)
                    self._indexes[level] = index
                self._model = identity
                self._loaded_generation = min(horizons)
            if self.follows:
                self._follow(conn)
        if rebuilt:
            log.info("indexes rebuilt from the catalog: %s", [lv.value for lv in rebuilt])
            self.save()
        return rebuilt

    def rebuild(self) -> None:
        """Rebuild every level's index from the catalog's vectors (no re-embedding)."""
        dim = self.dim
        if dim is None:
            return
        conn = self.connection()
        with self._follow_lock:
            start = _log.current_horizon(conn) if self.follows else _meta.generation(conn)
            with self._lock:
                self._indexes = {lv: _files.build(conn, lv, self._hnsw[lv], dim)
                                 for lv in _LEVELS}
                self._model = self.identity
                self._loaded_generation = start
            if self.follows:
                self._follow(conn)
        self.save()

    def save(self) -> None:
        """Save each index atomically (temporary file, fsync, rename), then its sidecar
        (with the generation or horizon the indexes reflect)."""
        identity, dim = self.identity, self.dim
        with self._write_lock:  # no change meanwhile; searches go on (saving only reads)
            with self._lock:
                indexes, generation = list(self._indexes.items()), self._loaded_generation
            for level, index in indexes:
                _files.save(
                    self.index_dir, level, index, self._hnsw[level],
                    identity=identity, dim=dim, generation=generation,
                )

    # -- writes -----------------------------------------------------------------------

    def add_instances(
        self,
        items: Sequence[vectors.InstanceVector],
        *,
        identity: str,
        only_claimed: bool = False,
        claimer: str | None = None,
    ) -> list[int]:
        """Store instance vectors (upsert on UID), update their series and studies, and
        the indexes. Returns the stored instances' keys. One catalog transaction (run
        again after a collision with another worker's, on PostgreSQL).

        With ``only_claimed`` (the worker), instances no longer claimed on the work queue
        by ``claimer`` (deleted while being embedded, or handed back) are left out.
        """
        if not items:
            return []
        dim = int(items[0].vector.shape[-1])
        self.check_model(identity, dim)
        keys, changes = retrying(self.connection(), lambda c: store_instances(
            c, items, model_id=identity, dim=dim, only_claimed=only_claimed, claimer=claimer))
        self.apply(changes)
        return keys

    def update(
        self,
        *,
        add: Sequence[vectors.InstanceVector],
        remove: Sequence[str],
        identity: str,
        also: Callable[[Connection, list[str]], None] | None = None,
        claimer: str | None = None,
    ) -> list[str]:
        """Store ``add`` (instances still claimed by ``claimer``) and delete the vectors
        of ``remove`` in one catalog transaction, then the indexes: a series' new sample
        replacing its old one, never half of each. ``also(conn, stored_uids)`` runs in the
        same transaction (the caller's own rows; run again with it after a collision).
        Returns the UIDs stored."""
        dim = int(add[0].vector.shape[-1]) if add else (self.dim or 0)
        if add:
            self.check_model(identity, dim)

        def work(conn: Connection) -> tuple[list[str], VectorChanges]:
            stored, changes = replace_instances(conn, add, remove, model_id=identity,
                                                dim=dim, claimer=claimer)
            if also is not None:
                also(conn, stored)
            return stored, changes

        stored, changes = retrying(self.connection(), work)
        self.apply(changes)
        return stored

    def delete_instance(self, sop_instance_uid: str) -> bool:
        """Remove an instance's vector, and update (or remove) its series and study.

        One transaction of its own; to delete vectors together with other rows, call
        :func:`indexer.index.delete_instances` in the caller's transaction, then
        :meth:`apply`.
        """
        changes = retrying(self.connection(),
                           lambda c: _delete_instances(c, [sop_instance_uid]))
        self.apply(changes)
        return not changes.empty

    def apply(self, changes: VectorChanges) -> None:
        """Bring the in-memory indexes in step with a committed change of ``vectors``."""
        if changes.empty:
            return
        # one vector at a time under the search lock, so a search waits for one insertion
        # (a millisecond or two at 100,000 vectors), not for a whole batch; every vector
        # applied is committed already, so a search may see any part of the batch
        with self._write_lock:
            for level, key in changes.removed:
                with self._lock:
                    index = self._indexes.get(level)
                    if index is not None and key in index:
                        index.remove(key)
            for level, key, vec in changes.upserted:
                with self._lock:
                    index = self._indexes.get(level)
                    if index is None:
                        continue  # not loaded here: rebuilt from the table when opened
                    if key in index:
                        index.remove(key)
                    index.add(key, vec)
            if not self.follows:  # PostgreSQL: the horizon moves with the follower only
                with self._lock:
                    self._loaded_generation = changes.generation
