"""The indexer's exceptions: one hierarchy, foreign errors wrapped with ``raise … from``.

::

    IndexerError
     ├── ModelUnavailable      no model could be loaded (hub unreachable, no local weights)
     ├── ModelMismatch         vectors or an index of another model identity or dimension
     ├── EngineRefused         a CPU engine whose vectors are not faithful to torch fp32
     ├── DecodeError           a file that is not DICOM, or pixels no plugin can decode
     └── QueueError            a queue call made in the wrong transaction state
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "EngineRefused",
    "IndexerError",
    "ModelMismatch",
    "ModelUnavailable",
    "QueueError",
]


class IndexerError(Exception):
    """Base class of every error the indexer raises on purpose."""


class ModelUnavailable(IndexerError):
    """No embedding model could be loaded; the message says why and how to provide weights."""


class ModelMismatch(IndexerError):
    """The index holds vectors of another model identity (or dimension) than the one offered.

    Changing the model is an explicit rebuild (``IndexSet.switch_model``), never a silent mix.
    """


class EngineRefused(IndexerError):
    """An inference engine for the image tower failed its fidelity check against torch fp32
    (or could not be built); the message says which and why. The node embeds with the next
    engine (at last torch) instead, so vectors of one model stay interchangeable."""


class DecodeError(IndexerError):
    """A file is not DICOM, or its pixel data cannot be decoded."""


class QueueError(IndexerError):
    """A work-queue function was called in a transaction state it does not allow."""
