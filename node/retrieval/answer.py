"""The answer to a similar-case query: ranked cases, each with its best-matching
instance and its study's report, the consensus of their labels, and what the order is
based on (:class:`RankingValues`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from indexer import LevelValues
from node.retrieval.consensus import Consensus
from node.storage.study_reports import Report

__all__ = ["EXCERPT_CHARS", "Case", "RankingValues", "SimilarAnswer", "excerpt"]

#: the longest report text a result carries inline (the whole report is a link away)
EXCERPT_CHARS = 1000


class RankingValues(str, Enum):
    """What an answer's order is based on."""

    #: the cosine between the query and each case (the case's ``score``)
    COSINE = "cosine"
    #: reciprocal rank fusion of the text tower's and BM25's rankings (each case's
    #: ``ranking_score``; its ``score`` stays the cosine)
    RRF = "rrf"


@dataclass(frozen=True, slots=True)
class Case:
    """One retrieved case at the query's level."""

    rank: int
    score: float
    level: LevelValues
    uid: str
    study_instance_uid: str
    series_instance_uid: str | None
    sop_instance_uid: str | None
    best_instance_uid: str | None
    best_series_uid: str | None
    report: Report | None = None
    #: what the order is based on when it is not ``score`` (the RRF score of a fused
    #: answer); ``None`` when the answer is ordered by ``score``
    ranking_score: float | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.report.labels if self.report is not None else ()


@dataclass(frozen=True, slots=True)
class SimilarAnswer:
    """The cases, best first, the majority label (``None`` when none has labels; whether
    it is supported enough to state is :class:`~node.retrieval.ConsensusMinimum`'s
    decision), and what the order is based on."""

    level: LevelValues
    cases: tuple[Case, ...]
    consensus: Consensus | None
    ranking: RankingValues = RankingValues.COSINE


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` whole when it fits in ``limit`` characters, else cut at a word and ``…``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"
