"""Similar-case search over an :class:`~indexer.index.IndexSet`, with filters in the query.

Filters (modality, body part, study date range, excluded patient, excluded UIDs) are turned
into SQL over the ``vectors`` table, which gives the exact set of allowed keys. Then:

- no filter: a plain HNSW search;
- only exclusions (the query's own patient, the query object, negative feedback): nearly
  every key is allowed, so HNSW searches with a widening ``count`` (×4 each round) check
  each candidate's row against the filters;
- few allowed keys (at most ``exact_threshold``), or so few among many that the widening
  would have to walk past more than ``MAX_WIDENING`` candidates: an exact search over just
  those vectors with numpy;
- otherwise the same widening HNSW search, keeping only allowed keys.

When a widening reaches the index size without ``k`` allowed results, an exact search
over the allowed vectors finishes the job. So ``k`` allowed results come back whenever
``k`` exist — nothing is over-fetched and hoped for. The filter columns have a covering
index, so the allowed set is computed without reading any vector.

usearch's Python API (2.26) has no predicate callback for filtered search, hence this.

Relevance feedback (:func:`rocchio`) moves a query towards positive and away from negative
examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from indexer._levels import LevelValues
from indexer.filters import SearchFilters
from indexer.index import IndexSet, VectorRow, vectors

__all__ = ["EXACT_THRESHOLD", "Hit", "SearchFilters", "rocchio", "search"]

EXACT_THRESHOLD = 2_000
#: the most candidates a widening HNSW search may look at before exact search is cheaper
MAX_WIDENING = 4_096


@dataclasses.dataclass(frozen=True)
class Hit:
    """One result: ``score`` is cosine similarity (1 is identical)."""

    uid: str
    score: float
    level: LevelValues
    study_instance_uid: str
    best_instance_uid: str | None
    patient_id: str | None = None
    modality: str | None = None
    study_date: str | None = None


def search(
    index_set: IndexSet,
    vector: npt.NDArray[np.float32],
    *,
    level: LevelValues | str = LevelValues.STUDY,
    k: int = 10,
    filters: SearchFilters | None = None,
    exact_threshold: int = EXACT_THRESHOLD,
) -> list[Hit]:
    """The ``k`` most similar cases at ``level`` that pass ``filters``, best first."""
    lvl = LevelValues(level)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(q))
    if norm == 0 or not np.isfinite(norm):
        raise ValueError("vector must be finite and non-zero")
    q = q / norm
    flt = filters or SearchFilters()
    if not flt.active:
        keys, dist = index_set.ann(lvl, q, k)
        ranked = [(int(a), 1.0 - float(b)) for a, b in zip(keys, dist, strict=True)]
    else:
        ranked = _filtered(index_set, lvl, q, k, flt, exact_threshold)
    rows = index_set.rows([key for key, _ in ranked])
    found = [(rows[key], score) for key, score in ranked if key in rows]
    best = vectors.best_instances(index_set.connection(), lvl, [r.uid for r, _ in found], q)
    return [_hit(row, score, best.get(row.uid)) for row, score in found]


def _allowed(index_set: IndexSet, level: LevelValues, flt: SearchFilters) -> set[int]:
    return vectors.keys_passing(index_set.connection(), level, flt)


def _exact(
    index_set: IndexSet, keys: Sequence[int], q: npt.NDArray[np.float32], k: int
) -> list[tuple[int, float]]:
    found, matrix = vectors.vectors_of_keys(index_set.connection(), keys)
    if not found:
        return []
    sims = matrix @ q
    top = np.argsort(-sims, kind="stable")[:k]
    return [(found[i], float(sims[i])) for i in top]


def _filtered(
    index_set: IndexSet,
    level: LevelValues,
    q: npt.NDArray[np.float32],
    k: int,
    flt: SearchFilters,
    exact_threshold: int,
) -> list[tuple[int, float]]:
    size = index_set.count(level)
    if not flt.narrows:
        return _widening(index_set, level, q, k, flt, None, size)
    allowed = _allowed(index_set, level, flt)
    if len(allowed) <= exact_threshold or k * size > MAX_WIDENING * max(len(allowed), 1):
        return _exact(index_set, sorted(allowed), q, k)
    return _widening(index_set, level, q, k, flt, allowed, size)


def _widening(
    index_set: IndexSet,
    level: LevelValues,
    q: npt.NDArray[np.float32],
    k: int,
    flt: SearchFilters,
    allowed: set[int] | None,
    size: int,
) -> list[tuple[int, float]]:
    """HNSW searches, ×4 wider each round, keeping the candidates that pass ``flt``
    (``allowed`` when it is known, else each candidate's row is checked)."""
    count = k + len(flt.exclude_uids) + 16
    while True:
        count = min(count, size)
        keys, dist = index_set.ann(level, q, count)
        candidates = [(int(a), 1.0 - float(b)) for a, b in zip(keys, dist, strict=True)]
        if allowed is None:
            rows = index_set.rows([key for key, _ in candidates])
            out = [c for c in candidates if c[0] in rows and flt.matches(rows[c[0]])]
        else:
            out = [c for c in candidates if c[0] in allowed]
        if len(out) >= k:
            return out[:k]
        if count >= size or count >= MAX_WIDENING:
            if allowed is None:
                allowed = _allowed(index_set, level, flt)
            return _exact(index_set, sorted(allowed), q, k)
        count *= 4


def _hit(row: VectorRow, score: float, best_instance_uid: str | None) -> Hit:
    return Hit(
        uid=row.uid,
        score=score,
        level=row.level,
        study_instance_uid=row.study_instance_uid,
        best_instance_uid=best_instance_uid,
        patient_id=row.patient_id,
        modality=row.modality,
        study_date=row.study_date,
    )


def rocchio(
    query: npt.NDArray[np.float32],
    positives: npt.NDArray[np.float32] | Sequence[npt.NDArray[np.float32]] = (),
    negatives: npt.NDArray[np.float32] | Sequence[npt.NDArray[np.float32]] = (),
    *,
    alpha: float = 1.0,
    beta: float = 0.75,
    gamma: float = 0.15,
) -> npt.NDArray[np.float32]:
    """Relevance feedback: ``alpha*q + beta*mean(pos) - gamma*mean(neg)``, renormalised."""
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    out = alpha * q
    pos = np.asarray(positives, dtype=np.float32).reshape(-1, q.shape[0])
    neg = np.asarray(negatives, dtype=np.float32).reshape(-1, q.shape[0])
    if len(pos):
        out = out + beta * pos.mean(axis=0)
    if len(neg):
        out = out - gamma * neg.mean(axis=0)
    n = float(np.linalg.norm(out))
    if n == 0:
        raise ValueError("the feedback cancelled the query out (zero vector)")
    return np.asarray(out / n, dtype=np.float32)
