"""Pixels to screen, without Qt: frames of a study, modality LUT, window/level.

A :class:`StudyImages` holds a study's data sets grouped into series, each a list
of frames (a multi-frame instance contributes all its frames). Frames decode on
demand (pydicom and its pixel plugins) and are cached per instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import apply_modality_lut

__all__ = [
    "WINDOW_PRESETS",
    "Frame",
    "SeriesImages",
    "StudyImages",
    "read_folder",
    "window_to_uint8",
]

# name → (center, width) in Hounsfield units (CT); "Default" is the image's own
# (see :meth:`StudyImages.default_window`)
WINDOW_PRESETS: dict[str, tuple[float, float] | None] = {
    "Default": None,
    "Lung": (-600.0, 1500.0),
    "Mediastinum": (50.0, 350.0),
    "Bone": (500.0, 2000.0),
    "Brain": (40.0, 80.0),
    "Abdomen": (40.0, 400.0),
}


def read_folder(folder: str | Path) -> list[Dataset]:
    """Every DICOM file under ``folder`` (recursively); non-DICOM files are skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"folder: {root} is not a folder")
    datasets: list[Dataset] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            datasets.append(dcmread(path))
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue
    return datasets


def _float(value: object, default: float | None = None) -> float | None:
    if value is None:
        return default
    try:
        if not isinstance(value, (str, bytes, int, float)):  # multi-valued: the first
            value = next(iter(value))  # type: ignore[call-overload]
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return default


@dataclass(slots=True)
class Frame:
    dataset: Dataset
    index: int  # frame number within the instance, 0-based


@dataclass(slots=True)
class SeriesImages:
    series_instance_uid: str
    description: str
    modality: str
    frames: list[Frame] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.modality} {self.description}".strip() + f" ({len(self.frames)})"


class StudyImages:
    """A study's displayable frames, series by series."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = [ds for ds in datasets]
        images = [ds for ds in self.datasets if "PixelData" in ds]
        self.study_instance_uid = str(
            (images or self.datasets or [Dataset()])[0].get("StudyInstanceUID", ""))
        by_series: dict[str, list[Dataset]] = {}
        for ds in images:
            by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
        self.series: list[SeriesImages] = []
        for uid, members in by_series.items():
            members.sort(key=_slice_order)
            first = members[0]
            series = SeriesImages(uid, str(first.get("SeriesDescription", "") or ""),
                                  str(first.get("Modality", "") or ""))
            for ds in members:
                n = int(ds.get("NumberOfFrames", 1) or 1)
                series.frames += [Frame(ds, i) for i in range(n)]
            self.series.append(series)
        self.series.sort(key=lambda s: int(s.frames[0].dataset.get("SeriesNumber") or 0))
        self._cache: dict[int, np.ndarray] = {}

    @property
    def _first(self) -> Dataset:
        images = [s.frames[0].dataset for s in self.series if s.frames]
        return (images or self.datasets or [Dataset()])[0]

    @property
    def description(self) -> str:
        return str(self._first.get("StudyDescription", "") or "") or self.study_instance_uid

    @property
    def image_count(self) -> int:
        """Instances with pixels (what the series list shows; KOS, SR and the like are not)."""
        return sum(len({id(f.dataset) for f in s.frames}) for s in self.series)

    def title(self, *, hide_identity: bool = True) -> str:
        """A tab title a person can read, never a bare UID.

        The study description; without one, modality, date and accession number. The
        patient's name comes first only when identities are shown.
        """
        ds = self._first
        description = str(ds.get("StudyDescription", "") or "").strip()
        if description:
            parts = [description]
        else:
            modality = "/".join(dict.fromkeys(s.modality for s in self.series if s.modality))
            accession = str(ds.get("AccessionNumber", "") or "").strip()
            parts = [p for p in (modality or str(ds.get("Modality", "") or ""),
                                 _date_display(str(ds.get("StudyDate", "") or "")),
                                 f"Acc {accession}" if accession else "") if p]
        name = str(ds.get("PatientName", "") or "").replace("^", " ").strip()
        if name and not hide_identity:
            parts.insert(0, name)
        return " · ".join(parts) or "Study without description"

    @property
    def summary(self) -> str:
        """``"2 instances, 1 series."``: what is shown, not the non-image objects."""
        n, m = self.image_count, len(self.series)
        return (f"{n} instance{'s' if n != 1 else ''}, "
                f"{m} series." if n else "No images in this study.")

    def pixels(self, frame: Frame) -> np.ndarray:
        """The frame after the modality LUT (float32; RGB stays uint8 H×W×3)."""
        key = id(frame.dataset)
        if key not in self._cache:
            arr = frame.dataset.pixel_array
            if int(frame.dataset.get("SamplesPerPixel", 1) or 1) == 1:
                arr = apply_modality_lut(arr, frame.dataset).astype(np.float32)
            self._cache[key] = arr
        arr = self._cache[key]
        n = int(frame.dataset.get("NumberOfFrames", 1) or 1)
        return arr[frame.index] if n > 1 else arr

    def default_window(self, frame: Frame) -> tuple[float, float]:
        """(center, width): the file's window, when it says something about this image.

        A file without a window, or with one as wide as the whole pixel range (common
        on radiographs: it shows everything and nothing), gets the range of its middle
        99 % of pixels instead (0.5th to 99.5th percentile), as a reader would set it.
        """
        ds = frame.dataset
        center, width = _float(ds.get("WindowCenter")), _float(ds.get("WindowWidth"))
        arr = self.pixels(frame)
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if center is not None and width is not None and 0 < width < 0.9 * (hi - lo):
            return center, width
        if arr.ndim == 2 and arr.size > 16:
            lo, hi = (float(v) for v in np.percentile(arr, [0.5, 99.5]))
        return (lo + hi) / 2.0, max(hi - lo, 1.0)


def _date_display(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:]}" if len(d) == 8 and d.isdigit() else d


def _slice_order(ds: Dataset) -> tuple[float, float]:
    number = _float(ds.get("InstanceNumber"), 0.0) or 0.0
    position = ds.get("ImagePositionPatient")
    z = _float(position[2]) if position is not None and len(position) == 3 else None
    return (number, -(z or 0.0))


def window_to_uint8(arr: np.ndarray, center: float, width: float, *,
                    invert: bool = False) -> np.ndarray:
    """Linear window (DICOM PS3.3 C.11.2.1.2, simplified) to 0..255; RGB passes through."""
    if arr.ndim == 3:
        return np.ascontiguousarray(arr.astype(np.uint8))
    width = max(width, 1.0)
    lo = center - width / 2.0
    out = np.clip((arr.astype(np.float32) - lo) / width, 0.0, 1.0) * 255.0
    if invert:
        out = 255.0 - out
    return np.ascontiguousarray(out.astype(np.uint8))


def is_monochrome1(ds: Dataset) -> bool:
    return str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"


def frames_of(series: Sequence[SeriesImages]) -> int:
    return sum(len(s.frames) for s in series)
