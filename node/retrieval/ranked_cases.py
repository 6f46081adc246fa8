"""From ranked hits to the answer's cases: each case gets its series (instance level),
the series of its best-matching instance (for a thumbnail) and its study's report, and
the answer its consensus."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from database import Connection
from indexer import LevelValues
from node.retrieval.answer import Case, RankingValues, SimilarAnswer
from node.retrieval.consensus import consensus
from node.storage import holdings
from node.storage.study_reports import get_reports

if TYPE_CHECKING:
    from indexer.search import Hit

__all__ = ["Ranked", "answer", "parents_of", "ranked_hits"]


class Ranked(NamedTuple):
    """One ranked item before it becomes a :class:`Case`."""

    uid: str
    score: float
    study_instance_uid: str
    #: the series of an instance (instance level); ``None`` above
    parent_uid: str | None
    best_instance_uid: str | None
    #: what the order is based on when it is not ``score`` (a fused answer's RRF score)
    ranking_score: float | None = None


def parents_of(conn: Connection, level: LevelValues, uids: Sequence[str]
               ) -> dict[str, str]:
    """The series UID of each instance UID (at the instance level; empty above)."""
    if level is not LevelValues.INSTANCE:
        return {}
    return holdings.series_of_instances(conn, uids)


def ranked_hits(conn: Connection, level: LevelValues, hits: Sequence[Hit]
                ) -> list[Ranked]:
    """The indexer's hits, best first, as ranked items."""
    parents = parents_of(conn, level, [h.uid for h in hits])
    return [Ranked(h.uid, h.score, h.study_instance_uid, parents.get(h.uid),
                   h.best_instance_uid) for h in hits]


def _cases(conn: Connection, level: LevelValues, ranked: Sequence[Ranked]
           ) -> list[Case]:
    reports = get_reports(conn, (r.study_instance_uid for r in ranked))
    series_of = holdings.series_of_instances(
        conn, (r.best_instance_uid for r in ranked if r.best_instance_uid))
    cases = []
    for rank, item in enumerate(ranked, start=1):
        uid, best = item.uid, item.best_instance_uid
        series_uid = (uid if level is LevelValues.SERIES
                      else item.parent_uid if level is LevelValues.INSTANCE else None)
        cases.append(Case(
            rank=rank, score=float(item.score), level=level, uid=uid,
            study_instance_uid=item.study_instance_uid,
            series_instance_uid=series_uid,
            sop_instance_uid=uid if level is LevelValues.INSTANCE else None,
            best_instance_uid=best,
            best_series_uid=series_of.get(best) if best else None,
            report=reports.get(item.study_instance_uid),
            ranking_score=item.ranking_score,
        ))
    return cases


def answer(conn: Connection, level: LevelValues, ranked: Sequence[Ranked], *,
           ranking: RankingValues = RankingValues.COSINE) -> SimilarAnswer:
    """The answer: the cases in the order given (which ``ranking`` is based on), and
    their consensus."""
    cases = _cases(conn, level, ranked)
    return SimilarAnswer(level, tuple(cases), consensus(cases), ranking)
