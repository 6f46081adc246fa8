"""Similar-case retrieval: from a query to ranked cases, with reports and a consensus.

No HTTP here (the REST routes are thin). Along the data path:

- :mod:`.similar_query` — the query, validated (level, limit, filters, feedback UIDs);
- :mod:`.stored`, :mod:`.upload` — the query object: a stored study, series or
  instance (its stored vector), or an uploaded DICOM file, PNG or JPEG;
- :mod:`.feedback` — relevance feedback (Rocchio);
- :mod:`.text`, :mod:`.fusion` — the hybrid text ranking: BM25 over the reports fused
  with the text tower's ranking by reciprocal rank fusion;
- :mod:`.ranked_cases`, :mod:`.consensus`, :mod:`.answer` — the ranked cases with
  their best instance and report, the majority label and the minimum support it needs
  to be stated, and what the order is based on;
- :mod:`.pipeline` — the three kinds of query, each top to bottom.

Errors: :class:`node.errors.QueryError` and its subclasses (InvalidQuery 400,
UnknownObject 404, NotIndexed 409).
"""

from node.retrieval.answer import EXCERPT_CHARS, Case, RankingValues, SimilarAnswer, excerpt
from node.retrieval.consensus import Consensus, ConsensusMinimum, consensus
from node.retrieval.fusion import RRF_K, reciprocal_rank_fusion
from node.retrieval.pipeline import similar_to_image, similar_to_stored, similar_to_text
from node.retrieval.similar_query import MAX_LIMIT, SimilarQuery
from node.retrieval.stored import StoredObject, find_stored_object, stored_vector
from node.retrieval.upload import (
    UPLOAD_MEDIA_TYPES,
    DecodeBudget,
    DecodedUpload,
    UploadLimits,
    UploadMediaTypeValues,
    decode_upload,
)

__all__ = [
    "EXCERPT_CHARS",
    "MAX_LIMIT",
    "RRF_K",
    "UPLOAD_MEDIA_TYPES",
    "Case",
    "Consensus",
    "ConsensusMinimum",
    "DecodeBudget",
    "DecodedUpload",
    "RankingValues",
    "SimilarAnswer",
    "SimilarQuery",
    "StoredObject",
    "UploadLimits",
    "UploadMediaTypeValues",
    "consensus",
    "decode_upload",
    "excerpt",
    "find_stored_object",
    "reciprocal_rank_fusion",
    "similar_to_image",
    "similar_to_stored",
    "similar_to_text",
    "stored_vector",
]
