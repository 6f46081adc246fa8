"""Pixels to vectors: decoding and normalisation, the embedder, the usearch index,
the queue worker and evaluation.

The package imports nothing from ``node``, FastAPI, pynetdicom or Qt, and nothing heavy
(torch, open_clip) at import time: the embedder imports them when a model is loaded.

Submodules: ``normalise``, ``embedder``, ``queue``, ``index``, ``search``, ``worker``,
``evaluate``, ``errors``.
"""

from __future__ import annotations

from indexer._levels import LevelValues
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
]
