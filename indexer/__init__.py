"""Pixels to vectors: decoding and normalisation, volume sampling, the embedder, the
usearch index, the queue worker and evaluation.

The package imports nothing from ``node``, FastAPI, pynetdicom or Qt, and nothing heavy
(torch, open_clip) at import time: the embedder imports them when a model is loaded.

Submodules, along the data path: ``queue`` (the work queue), ``triage`` (what a header
says: not a case by SOP class — ``sop_classes`` —, a slice of a volume, a multi-frame
object, a picture), ``image_plane`` (where a slice or frame lies), ``sampling`` (which
slices and frames represent a volume), ``slices`` (the slices of volume series and their
sampling decisions), ``decisions`` (a series' decision, in two steps around the
embedding), ``normalise`` (pixels to a picture; its VOI step in ``voi``), ``embedder``
(pictures and texts to vectors), ``stages`` (decode ▶ normalise ▶ embed ▶ index, one
function each), ``worker`` (the queue loop), ``index`` (vectors and the usearch indexes),
``filters`` and ``search`` (similar cases), ``evaluate``; and ``errors``.

The indexer owns the catalog's ``work``, ``vectors``, ``index_meta``, ``slices``,
``volume_series`` and ``study_completion`` tables, created by :func:`ensure_schema`;
other packages read and change them only through :mod:`indexer.queue`,
:mod:`indexer.index` and :mod:`indexer.slices`, never with SQL of their own.
"""

from __future__ import annotations

from indexer._levels import LevelValues
from indexer._schema import TABLES, ensure_schema
from indexer.errors import (
    DecodeError,
    IndexerError,
    ModelMismatch,
    ModelUnavailable,
    QueueError,
)

__all__ = [
    "TABLES",
    "DecodeError",
    "IndexerError",
    "LevelValues",
    "ModelMismatch",
    "ModelUnavailable",
    "QueueError",
    "ensure_schema",
]
