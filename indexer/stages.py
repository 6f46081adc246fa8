"""The data path from a queued file to its vector, one plain function per stage, in order:
:func:`indexer.triage.triage` (the header: what to do, which frames) ▶ :func:`decode` ▶
:func:`normalise` ▶ :func:`shrink` (wired per instance by :func:`decode_and_normalise`,
which runs in the decode processes), then :func:`sort_outcomes` ▶ :func:`embed` ▶
:func:`index` (wired per batch by :func:`process_batch` for instances embedded on their
own; a series' sampling decision stores its slices' vectors in one transaction instead,
see :mod:`indexer.worker`).

Outcomes per instance:

- indexed → ``done``;
- not an image for retrieval (SEG, SR, KOS, presentation state, RT structure set, PDF…)
  or no picture → ``skipped`` with the reason;
- a slice of a volume left out of its series' sample → ``not_sampled`` (never decoded);
- not DICOM, or pixels no plugin decodes → ``failed`` with the reason (retrying won't help);
- a transient error (file unreadable, a decode process died, the model raised) → back to
  ``pending`` with exponential backoff, ``failed`` once claimed ``max_attempts`` times.

A multi-frame object is embedded by the frames triage chose; its vector is their mean
(renormalised).

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
    "embed_failed",
    "index",
    "instance_vectors",
    "normalise",
    "process_batch",
    "shrink",
    "sort_outcomes",
]


@dataclasses.dataclass(frozen=True)
class Decoded:
    """What the decode stages give back for one instance (small enough to pickle)."""

    sop_instance_uid: str
    #: the pictures to embed: one, or one per chosen frame of a multi-frame object
    pictures: tuple[npt.NDArray[np.uint8], ...] = ()
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


def normalise(ds: object, frame: int | None = None) -> NormalisedImage | SkipReason:
    """The pure normalisation of :mod:`indexer.normalise` (of one frame: by default the
    middle one)."""
    from pydicom.dataset import Dataset

    assert isinstance(ds, Dataset)
    return normalise_dataset(ds, frame)


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
    sop_instance_uid: str,
    path: str,
    image_size: int,
    crop: bool = False,
    frames: Sequence[int] | None = None,
) -> Decoded:
    """decode ▶ normalise ▶ shrink for one instance (its ``frames``, or its one picture:
    the middle frame); never raises (runs in a pool)."""
    try:
        ds = decode(Path(path))
    except DecodeError as exc:
        return Decoded(sop_instance_uid, failed=str(exc))
    except OSError as exc:
        return Decoded(sop_instance_uid, transient=f"cannot read {path}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a malformed file must not stop the batch
        return Decoded(sop_instance_uid, failed=f"unreadable DICOM: {type(exc).__name__}: {exc}")
    pictures: list[npt.NDArray[np.uint8]] = []
    for frame in frames if frames else [None]:
        try:
            result = normalise(ds, frame)
        except ValueError as exc:  # a frame the object does not have
            return Decoded(sop_instance_uid, failed=f"unsupported: {exc}")
        if isinstance(result, SkipReason):
            if result.code is SkipReasonValues.NO_PIXEL_DATA:
                return Decoded(sop_instance_uid, skipped=str(result))
            return Decoded(sop_instance_uid, failed=str(result))
        grey = result.voi_source is not VoiSourceValues.COLOUR
        pictures.append(shrink(result.pixels, image_size, grey=grey, crop=crop))
    return Decoded(
        sop_instance_uid,
        pictures=tuple(pictures),
        series_instance_uid=_text(ds, "SeriesInstanceUID") or "",
        study_instance_uid=_text(ds, "StudyInstanceUID") or "",
        patient_id=_text(ds, "PatientID"),
        modality=_text(ds, "Modality"),
        body_part=(_text(ds, "BodyPartExamined") or "").upper() or None,
        study_date=_text(ds, "StudyDate"),
    )


def embed(
    embedder: Embedder, images: Sequence[Decoded]
) -> dict[str, npt.NDArray[np.float32]]:
    """The model stage: every picture of every instance in one call, then one unit vector
    per instance (the mean of its frames' vectors for a multi-frame object)."""
    flat = [p for d in images for p in d.pictures]
    vectors = embedder.embed_images(flat)
    out: dict[str, npt.NDArray[np.float32]] = {}
    start = 0
    for d in images:
        part = vectors[start : start + len(d.pictures)]
        start += len(d.pictures)
        mean = part.mean(axis=0) if len(part) > 1 else part[0]
        norm = float(np.linalg.norm(mean))
        out[d.sop_instance_uid] = np.asarray(mean / norm if norm > 0 else mean, np.float32)
    return out


def instance_vectors(
    decoded: Sequence[Decoded], vectors: dict[str, npt.NDArray[np.float32]]
) -> list[InstanceVector]:
    """What the index stores for these embedded instances."""
    return [
        InstanceVector(
            sop_instance_uid=d.sop_instance_uid,
            series_instance_uid=d.series_instance_uid or f"{d.sop_instance_uid}.series",
            study_instance_uid=d.study_instance_uid or f"{d.sop_instance_uid}.study",
            vector=vectors[d.sop_instance_uid],
            patient_id=d.patient_id,
            modality=d.modality,
            body_part=d.body_part,
            study_date=d.study_date,
        )
        for d in decoded
    ]


def index(
    index_set: IndexSet,
    decoded: Sequence[Decoded],
    vectors: dict[str, npt.NDArray[np.float32]],
    identity: str,
    *,
    claimer: str | None = None,
) -> None:
    """The index stage: instance vectors in, series and study means updated (only for
    instances still claimed by ``claimer``: one deleted meanwhile stays deleted, one
    handed back to another worker is that worker's)."""
    index_set.add_instances(
        instance_vectors(decoded, vectors), identity=identity, only_claimed=True,
        claimer=claimer,
    )


def sort_outcomes(decoded: Sequence[Decoded]) -> tuple[BatchReport, list[Decoded]]:
    """Outcomes that need no model (skipped, failed, transient) into a report; the
    instances with pictures to embed apart."""
    report = BatchReport()
    images: list[Decoded] = []
    for d in decoded:
        if d.skipped is not None:
            report.skipped[d.sop_instance_uid] = d.skipped
        elif d.failed is not None:
            report.failed[d.sop_instance_uid] = d.failed
        elif d.transient is not None or not d.pictures:
            report.transient[d.sop_instance_uid] = d.transient or "no pixels"
        else:
            images.append(d)
    return report, images


def embed_failed(exc: BaseException) -> str:
    """The transient reason recorded when the model raised."""
    return f"embedding failed: {type(exc).__name__}: {exc}"[:500]


def process_batch(
    decoded: Sequence[Decoded], *, embedder: Embedder, index_set: IndexSet
) -> BatchReport:
    """The pipeline after decoding, for instances embedded on their own: sort outcomes,
    embed the pictures, index them."""
    report, images = sort_outcomes(decoded)
    if images:
        try:
            vectors = embed(embedder, images)
            index(index_set, images, vectors, embedder.identity)
        except ModelMismatch:
            raise
        except (RuntimeError, ValueError, MemoryError) as exc:  # the model or torch failed
            for d in images:
                report.transient[d.sop_instance_uid] = embed_failed(exc)
            return report
        report.done.extend(d.sop_instance_uid for d in images)
    return report
