"""Parent vectors: a series vector is the mean of its instances' vectors, a study vector
the mean of its series' vectors, both renormalised to unit length.

For series and studies, ``modality`` and ``body_part`` hold the distinct values of their
children joined with ``\\`` (DICOM multi-value), so filters match any of them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from database import Connection
from indexer._levels import LevelValues
from indexer.index import vectors

__all__ = ["ParentChange", "joined", "refresh_parents"]

#: (level, key, new vector), or (level, key, None) when the parent lost its last child
ParentChange = tuple[LevelValues, int, npt.NDArray[np.float32] | None]


def joined(values: Iterable[object]) -> str | None:
    """Distinct non-empty values joined with backslash (the DICOM multi-value separator)."""
    seen: list[str] = []
    for v in values:
        for part in str(v or "").split("\\"):
            if part and part not in seen:
                seen.append(part)
    return "\\".join(sorted(seen)) if seen else None


def refresh_parents(
    conn: Connection, series: Iterable[tuple[str, str]], model_id: str
) -> list[ParentChange]:
    """Recompute the given (series UID, study UID) series' means, then their studies'
    (inside the caller's transaction). A parent without children is deleted."""
    out: list[ParentChange] = []
    studies: set[str] = set()
    for series_uid, study_uid in series:
        studies.add(study_uid)
        out += _refresh_one(
            conn, LevelValues.SERIES, series_uid, study_uid, LevelValues.INSTANCE, model_id
        )
    for study_uid in sorted(studies):
        out += _refresh_one(conn, LevelValues.STUDY, study_uid, None, LevelValues.SERIES, model_id)
    return out


def _refresh_one(
    conn: Connection,
    level: LevelValues,
    uid: str,
    parent_uid: str | None,
    child_level: LevelValues,
    model_id: str,
) -> list[ParentChange]:
    children = vectors.members(conn, child_level, uid)
    if not children:
        key = vectors.delete_row(conn, level, uid)
        return [] if key is None else [(level, key, None)]
    vec = vectors.unit(np.mean(np.stack([vectors.from_blob(c[0]) for c in children]), axis=0))
    first = children[0]
    key = vectors.upsert(
        conn,
        level=level,
        uid=uid,
        parent_uid=parent_uid,
        study_instance_uid=str(first[1]),
        patient_id=first[2],
        modality=joined(c[3] for c in children),
        body_part=joined(c[4] for c in children),
        study_date=first[5],
        model_id=model_id,
        vector=vec,
    )
    return [(level, key, vec)]
