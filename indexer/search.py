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
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer._levels import LevelValues
from indexer.index import IndexSet, VectorRow

__all__ = ["EXACT_THRESHOLD", "Hit", "SearchFilters", "rocchio", "search"]

EXACT_THRESHOLD = 2_000
#: the most candidates a widening HNSW search may look at before exact search is cheaper
MAX_WIDENING = 4_096
_DATE = re.compile(r"^\d{8}$")


@dataclasses.dataclass(frozen=True)
class SearchFilters:
    """What a result must satisfy. Dates are ``YYYYMMDD`` and inclusive."""

    modality: str | None = None
    body_part: str | None = None
    study_date_from: str | None = None
    study_date_to: str | None = None
    exclude_patient_id: str | None = None
    exclude_uids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("study_date_from", "study_date_to"):
            value = getattr(self, name)
            if value is not None and not _DATE.match(value):
                raise ValueError(f"{name} must be YYYYMMDD, got {value!r}")
        if (
            self.study_date_from
            and self.study_date_to
            and self.study_date_from > self.study_date_to
        ):
            raise ValueError(
                f"study_date_from ({self.study_date_from}) is after study_date_to "
                f"({self.study_date_to})"
            )
        if not isinstance(self.exclude_uids, frozenset):
            object.__setattr__(self, "exclude_uids", frozenset(self.exclude_uids))

    @property
    def active(self) -> bool:
        return any(
            (
                self.modality,
                self.body_part,
                self.study_date_from,
                self.study_date_to,
                self.exclude_patient_id,
                self.exclude_uids,
            )
        )

    @property
    def narrows(self) -> bool:
        """True when a filter keeps only some keys (not merely excludes a few)."""
        return any((self.modality, self.body_part, self.study_date_from, self.study_date_to))

    def matches(self, row: VectorRow) -> bool:
        """The same test as :meth:`sql`, on one row."""
        if self.modality and self.modality.upper() not in (row.modality or "").split("\\"):
            return False
        if self.body_part and self.body_part.upper() not in (
            (row.body_part or "").upper().split("\\")
        ):
            return False
        if self.study_date_from and not (row.study_date or "") >= self.study_date_from:
            return False
        if self.study_date_to and not (row.study_date and row.study_date <= self.study_date_to):
            return False
        excluded = self.exclude_patient_id
        if excluded is not None and (row.patient_id or "") == excluded:
            return False
        return row.uid not in self.exclude_uids

    def sql(self) -> tuple[str, list[Any]]:
        """A WHERE fragment over ``vectors`` and its parameters (multi-values are ``\\``)."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.modality:
            clauses.append("instr('\\' || coalesce(modality, '') || '\\', ?) > 0")
            params.append(f"\\{self.modality.upper()}\\")
        if self.body_part:
            clauses.append("instr('\\' || upper(coalesce(body_part, '')) || '\\', ?) > 0")
            params.append(f"\\{self.body_part.upper()}\\")
        if self.study_date_from:
            clauses.append("study_date >= ?")
            params.append(self.study_date_from)
        if self.study_date_to:
            clauses.append("study_date <= ?")
            params.append(self.study_date_to)
        if self.exclude_patient_id is not None:
            clauses.append("coalesce(patient_id, '') != ?")
            params.append(self.exclude_patient_id)
        return (" AND ".join(clauses) or "1"), params


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
    return [_hit(index_set, rows[key], score, q) for key, score in ranked if key in rows]


def _allowed(index_set: IndexSet, level: LevelValues, flt: SearchFilters) -> set[int]:
    where, params = flt.sql()
    cur = index_set.connection().execute(
        f"SELECT key, uid FROM vectors WHERE level = ? AND {where}", [level.value, *params]
    )
    return {int(key) for key, uid in cur if uid not in flt.exclude_uids}


def _exact(
    index_set: IndexSet, keys: Sequence[int], q: npt.NDArray[np.float32], k: int
) -> list[tuple[int, float]]:
    if not keys:
        return []
    conn = index_set.connection()
    found: list[int] = []
    vecs: list[npt.NDArray[np.float32]] = []
    for i in range(0, len(keys), 900):
        chunk = list(keys[i : i + 900])
        marks = ",".join("?" * len(chunk))
        for key, blob in conn.execute(
            f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
        ):
            found.append(int(key))
            vecs.append(np.frombuffer(blob, dtype="<f4"))
    if not found:
        return []
    sims = np.stack(vecs).astype(np.float32) @ q
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


def _hit(
    index_set: IndexSet, row: VectorRow, score: float, q: npt.NDArray[np.float32]
) -> Hit:
    best: str | None = row.uid if row.level is LevelValues.INSTANCE else None
    if best is None:
        column = "study_instance_uid" if row.level is LevelValues.STUDY else "parent_uid"
        cur = index_set.connection().execute(
            f"SELECT uid, vector FROM vectors WHERE level = 'instance' AND {column} = ?",
            (row.uid,),
        )
        best_sim = -2.0
        for uid, blob in cur:
            sim = float(np.frombuffer(blob, dtype="<f4") @ q)
            if sim > best_sim:
                best, best_sim = str(uid), sim
    return Hit(
        uid=row.uid,
        score=score,
        level=row.level,
        study_instance_uid=row.study_instance_uid,
        best_instance_uid=best,
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
