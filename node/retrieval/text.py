"""The hybrid text ranking: the text tower's nearest neighbours fused with a BM25
ranking of the reports (SQLite FTS5) by reciprocal rank fusion.

The BM25 side ranks studies; each contributes its items of the query's level that pass
the filters, in study order and then by cosine to the query. The query's cosine floor
(``minScore``) applies to the text tower's candidates only: a report match enters the
fusion whatever its cosine. Every score shown is the cosine, whichever ranking found the
item; the order is the fused one, and each item carries its RRF score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from database import Connection
from indexer import LevelValues
from node.retrieval.fusion import reciprocal_rank_fusion
from node.retrieval.ranked_cases import Ranked, parents_of
from node.retrieval.similar_query import SimilarQuery
from node.storage.study_reports import search_reports

if TYPE_CHECKING:
    from indexer.index import IndexSet
    from indexer.search import SearchFilters

__all__ = ["FUSION_DEPTH", "MAX_TEXT_CHARS", "hybrid_ranking"]

#: candidates each ranking contributes to a hybrid fusion, per requested result
FUSION_DEPTH = 5
MAX_TEXT_CHARS = 2000


def _text_candidates(index_set: IndexSet, level: LevelValues, studies: Sequence[str],
                     flt: SearchFilters, q: npt.NDArray[np.float32]
                     ) -> list[tuple[str, float, str, str | None]]:
    """Items of ``level`` in ``studies`` that pass ``flt``, ordered by study (BM25 rank)
    and then by cosine to ``q``: (uid, score, study uid, parent uid)."""
    if not studies:
        return []
    rank = {uid: i for i, uid in enumerate(studies)}
    items = [(v.uid, float(v.vector @ q), v.study_instance_uid, v.parent_uid)
             for v in index_set.vectors_in_studies(level, studies, flt)]
    items.sort(key=lambda it: (rank[it[2]], -it[1]))
    return items


def _best_instance(index_set: IndexSet, level: LevelValues, uid: str,
                   q: npt.NDArray[np.float32]) -> str | None:
    return index_set.best_instance(level, uid, q)


def hybrid_ranking(conn: Connection, index_set: IndexSet, text: str,
                   vector: npt.NDArray[np.float32], query: SimilarQuery) -> list[Ranked]:
    """At most ``query.limit`` items, best first by their RRF score: the dense ranking of
    ``vector`` (cut at the query's floor) and the BM25 ranking of ``text`` fused."""
    from indexer.search import search

    q = np.asarray(vector, dtype=np.float32) / max(float(np.linalg.norm(vector)), 1e-12)
    flt = query.filters(exclude_patient_id=None, exclude_uids=query.negative)
    depth = max(query.limit * FUSION_DEPTH, 50)
    dense = query.above_floor(search(index_set, q, level=query.level, k=depth, filters=flt))
    studies = search_reports(conn, text, depth)
    sparse = _text_candidates(index_set, query.level, studies, flt, q)[:depth]
    fused = reciprocal_rank_fusion([[h.uid for h in dense], [s[0] for s in sparse]])
    by_uid: dict[str, tuple[float, str, str | None, str | None]] = {}
    for s_uid, s_score, s_study, s_parent in sparse:
        by_uid[s_uid] = (s_score, s_study, s_parent, None)
    dense_parents = parents_of(conn, query.level, [h.uid for h in dense])
    for h in dense:
        by_uid[h.uid] = (h.score, h.study_instance_uid, dense_parents.get(h.uid),
                         h.best_instance_uid)
    ranked = []
    for uid, fused_score in fused[: query.limit]:
        score, study, parent, best = by_uid[uid]
        if best is None:
            best = _best_instance(index_set, query.level, uid, q)
        if query.level is LevelValues.INSTANCE and parent is None:
            parent = parents_of(conn, query.level, [uid]).get(uid)
        ranked.append(Ranked(uid, score, study, parent, best, ranking_score=fused_score))
    return ranked
