"""The data path from a queued file to its vector, one plain function per stage, in order:
:func:`decode` ▶ :func:`normalise` ▶ :func:`shrink` (wired per instance by
:func:`decode_and_normalise`, which runs in the decode processes), then :func:`embed` ▶
:func:`index` (wired per batch by :func:`process_batch`).

Outcomes per instance:

- indexed → ``done``;
- no picture (SR, KOS, PDF, waveform, RT plan…) → ``skipped`` with the reason;
- not DICOM, or pixels no plugin decodes → ``failed`` with the reason (retrying won't help);
- a transient error (file unreadable, a decode process died, the model raised) → back to
  ``pending`` with exponential backoff, ``failed`` once claimed ``max_attempts`` times.

:class:`indexer.worker.Worker` feeds batches from the queue through these stages and
marks the queue from the :class:`BatchReport`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.embedder import Embedder
from indexer.errors import DecodeError, ModelMismatch
from indexer.index import IndexSet, InstanceVector
from indexer.normalise import (
    NormalisedImage,
    SkipReason,
    SkipReasonValues,
    VoiSourceValues,
    normalise_dataset,
)

__all__ = [
    "BatchReport",
    "Decoded",
    "decode",
    "decode_and_normalise",
    "embed",
    "index",
    "normalise",
    "process_batch",
    "shrink",
]


@dataclasses.dataclass(frozen=True)
class Decoded:
    """What the decode stages give back for one instance (small enough to pickle)."""

    sop_instance_uid: str
    pixels: npt.NDArray[np.uint8] | None = None
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    patient_id: str | None = None
    modality: str | None = None
    body_part: str | None = None
    study_date: str | None = None
    skipped: str | None = None  # reason: no picture in this object
    failed: str | None = None  # reason: will not work on retry
    transient: str | None = None  # reason: may work on retry


@dataclasses.dataclass
class BatchReport:
    """What happened to a batch (the worker marks the queue from it)."""

    done: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    transient: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed) + len(self.transient)


def decode(path: Path) -> object:
    """Read a DICOM file (pixels are decoded lazily by :func:`normalise`)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise DecodeError(f"not a DICOM file: {exc}") from exc


def normalise(ds: object) -> NormalisedImage | SkipReason:
    """The pure normalisation of :mod:`indexer.normalise`."""
    from pydicom.dataset import Dataset

    assert isinstance(ds, Dataset)
    return normalise_dataset(ds)


def shrink(
    pixels: npt.NDArray[np.uint8], size: int, *, grey: bool = False, crop: bool = False
) -> npt.NDArray[np.uint8]:
    """Downscale so the shorter side is ``size`` (what the model's resize does anyway:
    less to move between processes), then, with ``crop``, cut the centre ``size``² square
    as the model's centre crop does. ``grey`` pictures (three equal channels) are resized
    as one channel."""
    h, w = pixels.shape[:2]
    short = min(h, w)
    out = pixels
    if short > size:
        from PIL import Image

        scale = size / short
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        bicubic = Image.Resampling.BICUBIC
        if grey:
            one = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]), "L")
            small = np.asarray(one.resize(new, bicubic, reducing_gap=3.0))
            out = np.stack([small, small, small], axis=-1)
        else:
            rgb = Image.fromarray(pixels, "RGB")
            out = np.asarray(rgb.resize(new, bicubic, reducing_gap=3.0))
    if crop and min(out.shape[:2]) >= size:
        h, w = out.shape[:2]
        top, left = round((h - size) / 2.0), round((w - size) / 2.0)
        out = np.ascontiguousarray(out[top : top + size, left : left + size])
    return out


def _text(ds: object, keyword: str) -> str | None:
    value = getattr(ds, keyword, None)
    return None if value in (None, "") else str(value)


def decode_and_normalise(
    sop_instance_uid: str, path: str, image_size: int, crop: bool = False
) -> Decoded:
    """decode ▶ normalise ▶ shrink for one instance; never raises (runs in a pool)."""
    try:
        ds = decode(Path(path))
    except DecodeError as exc:
        return Decoded(sop_instance_uid, failed=str(exc))
    except OSError as exc:
        return Decoded(sop_instance_uid, transient=f"cannot read {path}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a malformed file must not stop the batch
        return Decoded(sop_instance_uid, failed=f"unreadable DICOM: {type(exc).__name__}: {exc}")
    result = normalise(ds)
    if isinstance(result, SkipReason):
        if result.code is SkipReasonValues.NO_PIXEL_DATA:
            return Decoded(sop_instance_uid, skipped=str(result))
        return Decoded(sop_instance_uid, failed=str(result))
    return Decoded(
        sop_instance_uid,
        pixels=shrink(
            result.pixels,
            image_size,
            grey=result.voi_source is not VoiSourceValues.COLOUR,
            crop=crop,
        ),
        series_instance_uid=_text(ds, "SeriesInstanceUID") or "",
        study_instance_uid=_text(ds, "StudyInstanceUID") or "",
        patient_id=_text(ds, "PatientID"),
        modality=_text(ds, "Modality"),
        body_part=(_text(ds, "BodyPartExamined") or "").upper() or None,
        study_date=_text(ds, "StudyDate"),
    )


def embed(embedder: Embedder, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """The model stage: unit vectors, one per picture."""
    return embedder.embed_images(list(images))


def index(
    index_set: IndexSet, decoded: Sequence[Decoded], vectors: npt.NDArray[np.float32], identity: str
) -> None:
    """The index stage: instance vectors in, series and study means updated (only for
    instances still claimed: one deleted meanwhile stays deleted)."""
    index_set.add_instances(
        [
            InstanceVector(
                sop_instance_uid=d.sop_instance_uid,
                series_instance_uid=d.series_instance_uid or f"{d.sop_instance_uid}.series",
                study_instance_uid=d.study_instance_uid or f"{d.sop_instance_uid}.study",
                vector=v,
                patient_id=d.patient_id,
                modality=d.modality,
                body_part=d.body_part,
                study_date=d.study_date,
            )
            for d, v in zip(decoded, vectors, strict=True)
        ],
        identity=identity,
        only_claimed=True,
    )


def process_batch(
    decoded: Sequence[Decoded], *, embedder: Embedder, index_set: IndexSet
) -> BatchReport:
    """The pipeline after decoding: sort outcomes, embed the pictures, index them."""
    report = BatchReport()
    images: list[Decoded] = []
    for d in decoded:
        if d.skipped is not None:
            report.skipped[d.sop_instance_uid] = d.skipped
        elif d.failed is not None:
            report.failed[d.sop_instance_uid] = d.failed
        elif d.transient is not None or d.pixels is None:
            report.transient[d.sop_instance_uid] = d.transient or "no pixels"
        else:
            images.append(d)
    if images:
        try:
            vectors = embed(embedder, [d.pixels for d in images if d.pixels is not None])
            index(index_set, images, vectors, embedder.identity)
        except ModelMismatch:
            raise
        except (RuntimeError, ValueError, MemoryError) as exc:  # the model or torch failed
            reason = f"embedding failed: {type(exc).__name__}: {exc}"[:500]
            for d in images:
                report.transient[d.sop_instance_uid] = reason
            return report
        report.done.extend(d.sop_instance_uid for d in images)
    return report
