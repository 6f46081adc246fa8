"""Where a slice or a frame lies: the Image Plane Module (PS3.3 C.7.6.2) and, for
multi-frame objects, the Plane Position / Plane Orientation functional groups (C.7.6.16),
read from a header without touching pixel data.

The slice axis is the normal of ImageOrientationPatient: the cross product of its row and
column direction cosines. A slice's place along it is ImagePositionPatient projected on
that normal (PS3.3 C.7.6.2.1.1). :class:`SliceHeader` is what the sampler needs of one
instance; :func:`frame_positions` what it needs of one multi-frame object.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "Orientation",
    "Position",
    "SliceHeader",
    "frame_positions",
    "normal",
    "number_of_frames",
    "project",
    "slice_header",
]

#: (x, y, z) of the first voxel, in mm, in the patient coordinate system
Position = tuple[float, float, float]
#: row direction cosines then column direction cosines
Orientation = tuple[float, float, float, float, float, float]


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats from a multi-valued element, None if it is not that."""
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _position(value: Any) -> Position | None:
    v = _floats(value, 3)
    return None if v is None else (v[0], v[1], v[2])


def _orientation(value: Any) -> Orientation | None:
    v = _floats(value, 6)
    if v is None or normal((v[0], v[1], v[2], v[3], v[4], v[5])) is None:
        return None
    return (v[0], v[1], v[2], v[3], v[4], v[5])


def normal(orientation: Orientation) -> tuple[float, float, float] | None:
    """The unit slice normal (row × column), None when the cosines are degenerate."""
    rx, ry, rz, cx, cy, cz = orientation
    n = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    length = math.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2)
    if length < 1e-6:
        return None
    return (n[0] / length, n[1] / length, n[2] / length)


def project(position: Position, axis: tuple[float, float, float]) -> float:
    """The place of ``position`` along ``axis`` (mm)."""
    return position[0] * axis[0] + position[1] * axis[1] + position[2] * axis[2]


def number_of_frames(ds: Any) -> int:
    """NumberOfFrames, 1 when absent or not a number."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _instance_number(ds: Any) -> int | None:
    try:
        value = ds.get("InstanceNumber")
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class SliceHeader:
    """What sampling needs of one instance of a series (all from its header)."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    modality: str | None
    instance_number: int | None
    position: Position | None
    orientation: Orientation | None


def slice_header(ds: Any) -> SliceHeader:
    """The plane geometry of a single-frame instance (missing values are None)."""

    def text(keyword: str) -> str:
        value = ds.get(keyword)
        return "" if value is None else str(value)

    return SliceHeader(
        sop_instance_uid=text("SOPInstanceUID"),
        series_instance_uid=text("SeriesInstanceUID"),
        study_instance_uid=text("StudyInstanceUID"),
        modality=text("Modality") or None,
        instance_number=_instance_number(ds),
        position=_position(ds.get("ImagePositionPatient")),
        orientation=_orientation(ds.get("ImageOrientationPatient")),
    )


def _group(item: Any, sequence: str, keyword: str) -> Any:
    seq = item.get(sequence) if item is not None else None
    if not seq:
        return None
    return seq[0].get(keyword)


def frame_positions(ds: Any) -> list[float] | None:
    """Each frame's place along the slice axis, from the per-frame Plane Position
    Sequence and the (shared or per-frame) Plane Orientation Sequence; None when any
    frame lacks them (the frames are then taken in stored order)."""
    n = number_of_frames(ds)
    per_frame: Sequence[Any] = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_seq[0] if shared_seq else None
    if len(per_frame) != n:
        return None
    shared_orientation = _orientation(
        _group(shared, "PlaneOrientationSequence", "ImageOrientationPatient")
    )
    places: list[float] = []
    axis: tuple[float, float, float] | None = None
    for item in per_frame:
        position = _position(_group(item, "PlanePositionSequence", "ImagePositionPatient"))
        orientation = _orientation(
            _group(item, "PlaneOrientationSequence", "ImageOrientationPatient")
        ) or shared_orientation
        if position is None or orientation is None:
            return None
        if axis is None:
            axis = normal(orientation)  # the first frame's normal is the object's axis
        if axis is None:
            return None
        places.append(project(position, axis))
    return places
