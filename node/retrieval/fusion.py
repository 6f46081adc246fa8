"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): several rankings
of the same items become one, by ``sum(1 / (k + rank))``."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["RRF_K", "reciprocal_rank_fusion"]

#: the constant of the paper; it damps the weight of the first few ranks
RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], *, k: int = RRF_K
                           ) -> list[tuple[str, float]]:
    """Fuse rankings (best first) by ``sum(1 / (k + rank))``; best first, ties keep the
    order of first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, uid in enumerate(ranking, start=1):
            scores[uid] = scores.get(uid, 0.0) + 1.0 / (k + rank)
    order = {uid: i for i, uid in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))
