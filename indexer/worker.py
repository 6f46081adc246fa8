"""The queue worker: claimed instances through decode ▶ normalise ▶ embed ▶ index.

The data path reads top to bottom in this module, each stage a plain function:
:func:`decode` ▶ :func:`normalise` ▶ :func:`shrink` (wired per instance by
:func:`decode_and_normalise`, which runs in the decode processes), then :func:`embed` ▶
:func:`index` (wired per batch by :func:`process_batch`).

Decoding and normalisation (the CPU-heavy part) run in a process pool when
``decode_processes > 0`` and, in :meth:`Worker.run`, the next batch is decoded while the
current one is embedded, so the model is fed continuously.

Outcomes per instance:

- indexed → ``done``;
- no picture (SR, KOS, PDF, waveform, RT plan…) → ``skipped`` with the reason;
- not DICOM, or pixels no plugin decodes → ``failed`` with the reason (retrying won't help);
- a transient error (file unreadable, a decode process died, the model raised) → back to
  ``pending`` with exponential backoff, ``failed`` once claimed ``max_attempts`` times.

Safe to kill at any moment: vectors are unique per (level, UID) and written in one
transaction, the index files are rebuilt from the catalog when stale, and instances left
``in_progress`` go back to ``pending`` when a worker starts.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer import queue
from indexer.embedder import Embedder
from indexer.errors import DecodeError, ModelMismatch
from indexer.index import IndexSet, InstanceVector, connect
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
    "Worker",
    "decode",
    "decode_and_normalise",
    "embed",
    "index",
    "normalise",
    "process_batch",
    "shrink",
]

log = logging.getLogger(__name__)


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


# -- the stages -------------------------------------------------------------------------


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
    """The index stage: instance vectors in, series and study means updated."""
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


# -- the worker -------------------------------------------------------------------------


class Worker:
    """Takes batches off the work queue and indexes them (one per node process)."""

    def __init__(
        self,
        *,
        db_path: str | os.PathLike[str],
        data_dir: str | os.PathLike[str],
        embedder: Embedder,
        index_set: IndexSet,
        batch_size: int = 32,
        decode_processes: int = 0,
        max_attempts: int = 3,
        backoff_s: float = 5.0,
        poll_interval_s: float = 0.5,
        save_interval_s: float = 30.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if decode_processes < 0:
            raise ValueError(f"decode_processes must not be negative, got {decode_processes}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if backoff_s < 0 or poll_interval_s < 0 or save_interval_s < 0:
            raise ValueError("backoff_s, poll_interval_s and save_interval_s must not be negative")
        self.db_path = Path(db_path)
        self.data_dir = Path(data_dir)
        self.embedder = embedder
        self.index_set = index_set
        self.batch_size = batch_size
        self.decode_processes = decode_processes
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.poll_interval_s = poll_interval_s
        self.save_interval_s = save_interval_s
        # Used by one thread at a time: the one that builds the worker, then the one that
        # runs it (the node builds it at start-up and runs it in its own thread).
        self._conn = connect(self.db_path, check_same_thread=False)
        queue.ensure_schema(self._conn)
        index_set.check_model(embedder.identity, embedder.dim)
        recovered = queue.reset_in_progress(self._conn, max_attempts=max_attempts)
        if recovered:
            log.info("worker start: %d interrupted instances back to pending", recovered)
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor | None:
        if self.decode_processes == 0:
            return None
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.decode_processes, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _submit(self, items: Sequence[queue.WorkItem]) -> list[cf.Future[Decoded] | Decoded]:
        pool = self._executor()
        size, crop = self.embedder.image_size, self.embedder.crops_to_square
        paths = [(it.sop_instance_uid, str(self.data_dir / it.path)) for it in items]
        out: list[cf.Future[Decoded] | Decoded] = []
        for uid, p in paths:
            if pool is None:
                out.append(decode_and_normalise(uid, p, size, crop))
            else:
                out.append(pool.submit(decode_and_normalise, uid, p, size, crop))
        return out

    def _collect(
        self, items: Sequence[queue.WorkItem], pending: list[cf.Future[Decoded] | Decoded]
    ) -> list[Decoded]:
        out: list[Decoded] = []
        broken = False
        for it, f in zip(items, pending, strict=True):
            if isinstance(f, Decoded):
                out.append(f)
                continue
            try:
                out.append(f.result())
            except BrokenProcessPool as exc:
                broken = True
                out.append(Decoded(it.sop_instance_uid, transient=f"decode process died: {exc}"))
        if broken and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return out

    def _finish(self, items: Sequence[queue.WorkItem], decoded: Sequence[Decoded]) -> BatchReport:
        report = process_batch(decoded, embedder=self.embedder, index_set=self.index_set)
        self._mark(items, report)
        return report

    def _mark(self, items: Sequence[queue.WorkItem], report: BatchReport) -> None:
        conn = self._conn
        if report.done:
            queue.mark_done(conn, report.done)
        for uid, reason in report.skipped.items():
            queue.mark_skipped(conn, uid, reason)
        for uid, reason in report.failed.items():
            log.warning("instance failed: %s: %s", uid, reason)
            queue.mark_failed(conn, uid, reason)
        attempts = {it.sop_instance_uid: it.attempts for it in items}
        for uid, reason in report.transient.items():
            n = attempts.get(uid, self.max_attempts)
            if n >= self.max_attempts:
                queue.mark_failed(conn, uid, f"{reason} (after {n} attempts)")
            else:
                queue.retry_later(conn, uid, reason, backoff_s=self.backoff_s * 2 ** (n - 1))

    def run_once(self) -> int:
        """Claim one batch and see it through; returns how many instances it held."""
        items = queue.claim(self._conn, self.batch_size)
        if not items:
            return 0
        self._finish(items, self._collect(items, self._submit(items)))
        return len(items)

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set, decoding the next batch while embedding this one."""
        last_save = time.monotonic()
        current = queue.claim(self._conn, self.batch_size)
        pending: list[cf.Future[Decoded] | Decoded] = self._submit(current) if current else []
        try:
            while not stop.is_set():
                if not current:
                    if stop.wait(self.poll_interval_s):
                        break
                    current = queue.claim(self._conn, self.batch_size)
                    pending = self._submit(current) if current else []
                    continue
                nxt = queue.claim(self._conn, self.batch_size)
                nxt_pending = self._submit(nxt) if nxt else []
                self._finish(current, self._collect(current, pending))
                current, pending = nxt, nxt_pending
                if time.monotonic() - last_save >= self.save_interval_s:
                    self.index_set.save()
                    last_save = time.monotonic()
        finally:
            if current:
                for f in pending:
                    if isinstance(f, cf.Future):
                        f.cancel()
                queue.release(self._conn, [it.sop_instance_uid for it in current])
            self.index_set.save()

    def close(self) -> None:
        """Stop the decode processes and close the queue connection."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._conn.close()
