"""Similar cases, top to bottom: query → vector → feedback → search → cases.

The query's vector comes from what the query is:

- a **stored object**: its vector from the index (:mod:`.stored`; no model time);
- an **uploaded image**: the image tower's vector of the decoded picture (:mod:`.upload`);
- a **text**: the text tower's vector; with ``hybrid`` the ranking is fused with BM25
  over the reports (:mod:`.text`).

Then relevance feedback (:mod:`.feedback`), the indexer's filtered search, the query's
cosine floor (``minScore``: results below it are left out, so an answer may have fewer
than ``limit`` cases, or none), and the cases with their reports and consensus
(:mod:`.ranked_cases`). A fused (hybrid) answer is ordered by its RRF score
(:attr:`~node.retrieval.RankingValues.RRF`); every other one by the cosine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from database import Connection
from node.errors import InvalidQuery
from node.retrieval.answer import RankingValues, SimilarAnswer
from node.retrieval.feedback import relevance_feedback
from node.retrieval.ranked_cases import answer, ranked_hits
from node.retrieval.similar_query import SimilarQuery
from node.retrieval.stored import StoredObject, stored_vector
from node.retrieval.text import MAX_TEXT_CHARS, hybrid_ranking
from node.retrieval.upload import DecodedUpload

if TYPE_CHECKING:
    from indexer.embedder import Embedder
    from indexer.index import IndexSet

__all__ = ["similar_to_image", "similar_to_stored", "similar_to_text"]


def _similar_to_vector(conn: Connection, index_set: IndexSet,
                       vector: npt.NDArray[np.float32], query: SimilarQuery, *,
                       exclude_patient_id: str | None, exclude_uids: Iterable[str] = ()
                       ) -> SimilarAnswer:
    from indexer.search import search

    vector = relevance_feedback(index_set, vector, query)
    filters = query.filters(exclude_patient_id=exclude_patient_id,
                            exclude_uids=[*exclude_uids, *query.negative])
    hits = search(index_set, vector, level=query.level, k=query.limit, filters=filters)
    hits = query.above_floor(hits)  # best first: the floor cuts the tail
    return answer(conn, query.level, ranked_hits(conn, query.level, hits))


def similar_to_stored(conn: Connection, index_set: IndexSet, obj: StoredObject,
                      query: SimilarQuery) -> SimilarAnswer:
    """Cases similar to a stored object, at the object's level (the query object itself
    is never a result; its patient is left out unless ``exclude_patient`` is false)."""
    if query.level is not obj.level:
        raise InvalidQuery(f"a stored {obj.level.value} is searched at its own level, "
                           f"not {query.level.value}")
    vector = stored_vector(index_set, conn, obj)
    # a study without a Patient ID has no "own patient" to leave out
    exclude_patient = query.exclude_patient is not False and bool(obj.patient_id)
    patient = obj.patient_id if exclude_patient else None
    return _similar_to_vector(conn, index_set, vector, query,
                              exclude_patient_id=patient, exclude_uids=[obj.uid])


def similar_to_image(conn: Connection, embedder: Embedder, index_set: IndexSet,
                     upload: DecodedUpload, query: SimilarQuery) -> SimilarAnswer:
    """Cases similar to an uploaded picture. For a DICOM upload its patient is left out
    unless ``exclude_patient`` is false; a picture has no patient."""
    vector = embedder.embed_images([upload.pixels])[0]
    exclude = query.exclude_patient is not False and upload.patient_id is not None
    return _similar_to_vector(conn, index_set, vector, query,
                              exclude_patient_id=upload.patient_id if exclude else None)


def similar_to_text(conn: Connection, embedder: Embedder, index_set: IndexSet,
                    text: str, query: SimilarQuery, *, hybrid: bool) -> SimilarAnswer:
    """Cases matching ``text``: the text tower's vector, fused with BM25 over the reports
    when ``hybrid`` (reciprocal rank fusion; the answer is then ordered by each case's
    RRF score). The score is always the cosine; ``minScore`` floors the text tower's
    candidates (in a fused answer, report matches enter whatever their cosine)."""
    text = text.strip()
    if not text:
        raise InvalidQuery("text is empty: give a few words to search for")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidQuery(f"text is longer than {MAX_TEXT_CHARS} characters")
    vector = embedder.embed_texts([text])[0]
    if not hybrid:
        return _similar_to_vector(conn, index_set, vector, query, exclude_patient_id=None)
    vector = relevance_feedback(index_set, vector, query)
    return answer(conn, query.level, hybrid_ranking(conn, index_set, text, vector, query),
                  ranking=RankingValues.RRF)
