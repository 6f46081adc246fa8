"""The levels of the DICOM information model that the index keeps a vector for."""

from __future__ import annotations

import enum

__all__ = ["LevelValues"]


class LevelValues(str, enum.Enum):
    """Query/retrieve levels (PS3.4 C.6): one usearch index and one vectors level each."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"
