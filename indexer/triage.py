"""The first stage of the worker: what to do with a claimed instance, from its header
alone (read with ``stop_before_pixels``; no pixel is decoded here).

- not DICOM, or unreadable → ``failed`` (or a transient error: the file may yet appear);
- a SOP class that is not an image for retrieval (:mod:`indexer.sop_classes`) → ``skipped``
  with "not an image for retrieval (SOP class …)";
- a single-frame slice of a CT, MR, PET or NM series whose modality is sampled → a
  *slice*: it goes to its series' sampling (:mod:`indexer.slices`), never decoded unless
  chosen;
- a multi-frame object → embedded by the frames :func:`indexer.sampling.choose_frames`
  picks (along the Plane Position of each frame, else in stored order);
- anything else (projection images: CR, DX, MG, single-frame XA, US, SC…) → embedded as
  one picture.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

from indexer.image_plane import SliceHeader, frame_positions, number_of_frames, slice_header
from indexer.sampling import VolumeSampling, choose_frames
from indexer.sop_classes import is_cross_sectional, not_an_image_reason

__all__ = ["Triage", "TriageValues", "read_header", "triage"]


class TriageValues(str, enum.Enum):
    """What the worker does next with an instance."""

    EMBED = "embed"  #: decode and embed (the given frames of a multi-frame object)
    SLICE = "slice"  #: a slice of a volume: to its series' sampling
    SKIP = "skip"  #: not an image for retrieval
    FAIL = "fail"  #: cannot be used, and retrying will not help
    RETRY = "retry"  #: cannot be read now; may work later


@dataclasses.dataclass(frozen=True)
class Triage:
    """The outcome for one instance: what next, why (skip, fail, retry), which frames
    (multi-frame objects; None: the object's one picture) or the slice's header."""

    sop_instance_uid: str
    next: TriageValues
    reason: str | None = None
    frames: tuple[int, ...] | None = None
    header: SliceHeader | None = None


def read_header(path: Path) -> Any:
    """The data set without its pixel data; ``DecodeError`` when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from indexer.errors import DecodeError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise DecodeError(f"not a DICOM file: {exc}") from exc


def triage(sop_instance_uid: str, path: Path, sampling: VolumeSampling) -> Triage:
    """Look at one instance's header and say what becomes of it; never raises."""
    from indexer.errors import DecodeError

    try:
        ds = read_header(path)
        sop_class = str(ds.get("SOPClassUID") or "")
        modality = str(ds.get("Modality") or "") or None
        frames = number_of_frames(ds)
    except DecodeError as exc:
        return Triage(sop_instance_uid, TriageValues.FAIL, str(exc))
    except OSError as exc:
        return Triage(sop_instance_uid, TriageValues.RETRY, f"cannot read {path}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a malformed file must not stop the batch
        return Triage(sop_instance_uid, TriageValues.FAIL,
                      f"unreadable DICOM: {type(exc).__name__}: {exc}")
    reason = not_an_image_reason(sop_class)
    if reason is not None:
        return Triage(sop_instance_uid, TriageValues.SKIP, reason)
    k = sampling.k(modality)
    if frames > 1:
        try:
            places = frame_positions(ds)
        except Exception:  # noqa: BLE001 - malformed functional groups: stored order
            places = None
        chosen = choose_frames(frames, k, places)
        return Triage(sop_instance_uid, TriageValues.EMBED, frames=tuple(chosen))
    if k > 0 and is_cross_sectional(sop_class):
        header = slice_header(ds)
        if header.series_instance_uid and header.study_instance_uid:
            header = dataclasses.replace(header, sop_instance_uid=sop_instance_uid)
            return Triage(sop_instance_uid, TriageValues.SLICE, header=header)
    return Triage(sop_instance_uid, TriageValues.EMBED)
