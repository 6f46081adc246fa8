"""Small real DICOM objects for the indexer tests (written with pydicom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_data_files() -> list[Path]:
    """Every file of pydicom's own test data and of the pydicom-data package."""
    files = [p for p in PYDICOM_FILES.rglob("*") if p.is_file()]
    try:
        import data_store  # the pydicom-data package

        extra = Path(data_store.__file__).parent / "data"
        files += [p for p in extra.rglob("*") if p.is_file()]
    except ImportError:
        pass
    return sorted(files)


def _base(sop_class: str, **attrs: object) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = str(attrs.pop("sop_uid", None) or generate_uid())
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = str(attrs.pop("study_uid", None) or generate_uid())
    ds.SeriesInstanceUID = str(attrs.pop("series_uid", None) or generate_uid())
    ds.PatientID = str(attrs.pop("patient_id", "P1"))
    ds.StudyDate = str(attrs.pop("study_date", "20240101"))
    ds.Modality = str(attrs.pop("modality", "CT"))
    ds.BodyPartExamined = str(attrs.pop("body_part", "CHEST"))
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def grey_dataset(
    stored: np.ndarray,
    *,
    signed: bool = False,
    bits_stored: int = 16,
    photometric: str = "MONOCHROME2",
    sop_class: str = CTImageStorage,
    **attrs: object,
) -> FileDataset:
    """A grey image (one frame, or frames × rows × columns) from stored values."""
    ds = _base(sop_class, **attrs)
    arr = np.asarray(stored)
    frames = arr.shape[0] if arr.ndim == 3 else 1
    bits_allocated = 8 if arr.dtype.itemsize == 1 else 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = arr.shape[-2], arr.shape[-1]
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = min(bits_stored, bits_allocated)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    if frames > 1:
        ds.NumberOfFrames = frames
    dtype = {(8, False): "<u1", (8, True): "<i1", (16, False): "<u2", (16, True): "<i2"}
    ds.PixelData = arr.astype(dtype[(bits_allocated, signed)]).tobytes()
    return ds


def rgb_dataset(rgb: np.ndarray, **attrs: object) -> FileDataset:
    ds = _base(SecondaryCaptureImageStorage, **attrs)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return ds


def sr_dataset(**attrs: object) -> FileDataset:
    ds = _base(BasicTextSRStorage, **attrs)
    ds.Modality = "SR"
    return ds


def ct_pattern(seed: int, size: int = 48, kind: int = 0) -> np.ndarray:
    """Stored CT values (rescale -1024) with a pattern that depends on ``kind``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    shapes = [
        np.where(x > 0.6, 1500.0, 0.0),
        1500.0 * (((x - 0.4) ** 2 + (y - 0.4) ** 2) < 0.04),
        np.where(y > 0.7, 1500.0, 0.0),
        700.0 * (np.sin(x * 25) > 0),
    ]
    hu = shapes[kind % len(shapes)] + rng.normal(0, 30, (size, size)) - 200
    return np.clip(hu + 1024, 0, 4095).astype(np.uint16)


def write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
