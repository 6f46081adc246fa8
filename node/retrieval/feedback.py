"""Relevance feedback: the query vector moved towards the ``positive`` results and away
from the ``negative`` ones (Rocchio), with their stored vectors at the query's level."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from node.errors import InvalidQuery
from node.retrieval.similar_query import SimilarQuery

if TYPE_CHECKING:
    from indexer.index import IndexSet

__all__ = ["relevance_feedback"]


def relevance_feedback(index_set: IndexSet, vector: npt.NDArray[np.float32],
                       query: SimilarQuery) -> npt.NDArray[np.float32]:
    """``vector`` with the query's feedback applied (unchanged without feedback)."""
    if not query.positive and not query.negative:
        return vector
    from indexer.search import rocchio

    found: dict[str, list[npt.NDArray[np.float32]]] = {"positive": [], "negative": []}
    for name, uids in (("positive", query.positive), ("negative", query.negative)):
        for uid in uids:
            v = index_set.get_vector(query.level, uid)
            if v is None:
                raise InvalidQuery(f"{name} UID {uid} has no vector at the "
                                   f"{query.level.value} level: give UIDs of results "
                                   "of this query's level")
            found[name].append(v)
    try:
        return rocchio(vector, found["positive"], found["negative"])
    except ValueError as exc:
        raise InvalidQuery(f"relevance feedback: {exc}") from exc
