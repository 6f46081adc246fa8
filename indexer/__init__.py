"""Pixels to vectors: decoding and normalisation, the embedder, the usearch index,
the queue worker and evaluation.

The package imports nothing from ``node``, FastAPI, pynetdicom or Qt, and nothing heavy
(torch, open_clip) at import time: the embedder imports them when a model is loaded.

Submodules, along the data path: ``queue`` (the work queue), ``normalise`` (pixels to
a picture; its VOI step in ``voi``), ``embedder`` (pictures and texts to vectors),
``stages`` (decode ▶ normalise ▶ embed ▶ index, one function each), ``worker`` (the
queue loop), ``index`` (vectors and the usearch indexes), ``filters`` and ``search``
(similar cases), ``evaluate``; and ``errors``.

The indexer owns three tables of the catalog (``work``, ``vectors``, ``index_meta``),
created by :func:`ensure_schema`; other packages read and change them only through
:mod:`indexer.queue` and :mod:`indexer.index`, never with SQL of their own.
"""

from __future__ import annotations

from indexer._levels import LevelValues
from indexer._schema import ensure_schema
from indexer.errors import (
    DecodeError,
    IndexerError,
    ModelMismatch,
    ModelUnavailable,
    QueueError,
)

__all__ = [
    "DecodeError",
    "IndexerError",
    "LevelValues",
    "ModelMismatch",
    "ModelUnavailable",
    "QueueError",
    "ensure_schema",
]
