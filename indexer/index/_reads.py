"""The read side of :class:`~indexer.index.IndexSet`: nearest neighbours in the in-memory
indexes and stored vectors and rows from the catalog (a base class, so the set itself
stays about its writes and files)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from database import Connection
from indexer._levels import LevelValues
from indexer.filters import SearchFilters
from indexer.index import _meta, vectors

__all__ = ["IndexReads"]


class IndexReads:
    """Reads over the per-level indexes (``_indexes``, guarded by ``_lock``) and the
    catalog (``connection()``)."""

    _lock: threading.RLock
    _indexes: dict[LevelValues, Any]

    def connection(self) -> Connection:
        raise NotImplementedError

    @property
    def dim(self) -> int | None:
        """The dimension of the bound model's vectors (None while none is bound)."""
        return _meta.model_dim(self.connection())

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
        return vectors.get_vector(self.connection(), LevelValues(level), uid)

    def get_vectors(
        self, level: LevelValues | str, uids: Sequence[str]
    ) -> npt.NDArray[np.float32]:
        """Stored vectors of the given UIDs that exist (missing ones are left out)."""
        vecs = [v for v in (self.get_vector(level, u) for u in uids) if v is not None]
        dim = self.dim or 0
        return np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)

    def rows(self, keys: Sequence[int]) -> dict[int, vectors.VectorRow]:
        """The rows (without vectors) of the given keys."""
        return vectors.rows(self.connection(), keys)

    def best_instance(
        self, level: LevelValues | str, uid: str, query: npt.NDArray[np.float32]
    ) -> str | None:
        """The instance of a study or series closest to the unit ``query`` (an instance is
        its own); None when it has no instance vector."""
        return vectors.best_instance(self.connection(), LevelValues(level), uid, query)

    def vectors_in_studies(
        self,
        level: LevelValues | str,
        study_instance_uids: Sequence[str],
        filters: SearchFilters | None = None,
    ) -> list[vectors.StoredVector]:
        """The stored vectors of ``level`` in these studies that pass ``filters``."""
        return vectors.in_studies(
            self.connection(), LevelValues(level), study_instance_uids,
            filters or SearchFilters(),
        )
