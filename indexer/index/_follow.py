"""Following the catalog's change log (PostgreSQL): the part of
:class:`~indexer.index.IndexSet` that applies what other processes changed in
``vectors`` (see :mod:`indexer.index._log` for why it is exact)."""

from __future__ import annotations

import logging
import threading

from database import Connection
from indexer._levels import LevelValues
from indexer.index import _log, vectors
from indexer.index._changes import VectorChanges
from indexer.index._reads import IndexReads

__all__ = ["IndexFollowing"]

log = logging.getLogger("indexer.index._set")

_LEVELS = (LevelValues.INSTANCE, LevelValues.SERIES, LevelValues.STUDY)


class IndexFollowing(IndexReads):
    """:meth:`follow_changes` over the set's indexes, horizon (``_loaded_generation``)
    and loaded model (``_model``)."""

    follows: bool
    _follow_lock: threading.Lock
    _loaded_generation: int
    _model: str | None

    @property
    def identity(self) -> str | None:
        raise NotImplementedError

    def load_or_rebuild(self) -> list[LevelValues]:
        raise NotImplementedError

    def apply(self, changes: VectorChanges) -> None:
        raise NotImplementedError

    def follow_changes(self) -> int:
        """Apply what other processes changed in ``vectors`` since the indexes' horizon
        (PostgreSQL; nothing to do on SQLite, where this process is the only writer).
        Indexes of another model than the catalog's now are rebuilt. Returns how many
        keys were applied."""
        if not self.follows:
            return 0
        conn = self.connection()
        if self.identity != self._model:
            self.load_or_rebuild()
            return sum(self.count(lv) for lv in _LEVELS)
        with self._follow_lock:
            return self._follow(conn)

    def _follow(self, conn: Connection) -> int:
        """:meth:`follow_changes`, under the follow lock: in one snapshot the new horizon,
        the keys changed since the old one and their rows now; then applied."""
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            horizon = _log.current_horizon(conn)
            changed = _log.changed_since(conn, max(self._loaded_generation, 0))
            found_keys, matrix = vectors.vectors_of_keys(conn, [k for _, k in changed])
        finally:
            conn.rollback()
        found = dict(zip(found_keys, matrix, strict=True))
        changes = VectorChanges()
        for level, key in changed:
            vec = found.get(key)
            if vec is None:
                changes.removed.append((level, key))
            else:
                changes.upserted.append((level, key, vec))
        self.apply(changes)
        with self._lock:
            self._loaded_generation = horizon
        if changed:
            log.debug("followed %d vector changes; horizon %d", len(changed), horizon)
        return len(changed)

