"""Synthetic studies for tests and benchmarks: real DICOM objects (pydicom), with
pixel patterns that differ by finding so that similar cases are similar images."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

__all__ = ["FINDINGS", "SyntheticStudy", "ct_instance", "make_studies", "multipart_related",
           "to_bytes"]

#: each finding draws a different shape; studies with the same finding look alike
FINDINGS = ("pneumothorax", "nodule", "effusion", "normal")


@dataclass
class SyntheticStudy:
    study_instance_uid: str
    patient_id: str
    finding: str
    report: str
    datasets: list[Dataset]


def _pattern(finding: str, size: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    base = 200 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) * 4)
    if finding == "pneumothorax":
        shape = np.where(x > 0.7, -900.0, 0.0)
    elif finding == "nodule":
        shape = 800 * (((x - 0.35) ** 2 + (y - 0.4) ** 2) < 0.01)
    elif finding == "effusion":
        shape = np.where(y > 0.75, 600.0, 0.0)
    else:
        shape = 300 * np.sin(x * 20) * np.sin(y * 20)
    noise = rng.normal(0, 20, (size, size))
    return base + shape + noise


def ct_instance(
    *,
    study_uid: str,
    series_uid: str,
    patient_id: str,
    finding: str = "normal",
    size: int = 64,
    instance_number: int = 1,
    modality: str = "CT",
    body_part: str = "CHEST",
    study_date: str = "20240101",
    seed: int = 0,
) -> FileDataset:
    """One CT image (16-bit signed, rescale -1024) with a finding-specific pattern."""
    rng = np.random.default_rng(seed)
    hu = _pattern(finding, size, rng)
    stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientID, ds.PatientName = patient_id, f"Test^{patient_id}"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber = f"ACC{patient_id}"[:16]
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, instance_number
    ds.StudyDescription = f"CT chest {finding}"
    ds.SeriesDescription = "axial"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.Modality, ds.BodyPartExamined = modality, body_part
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = stored.tobytes()
    return ds


def make_studies(
    n_studies: int, *, instances_per_study: int = 2, size: int = 64, seed: int = 0
) -> Iterator[SyntheticStudy]:
    """``n_studies`` studies of distinct patients, cycling through :data:`FINDINGS`."""
    for i in range(n_studies):
        finding = FINDINGS[i % len(FINDINGS)]
        study_uid, series_uid = generate_uid(), generate_uid()
        patient_id = f"P{seed:03d}{i:05d}"
        datasets: list[Dataset] = [
            ct_instance(study_uid=study_uid, series_uid=series_uid, patient_id=patient_id,
                        finding=finding, size=size, instance_number=j + 1,
                        seed=seed * 100_000 + i * 10 + j)
            for j in range(instances_per_study)
        ]
        report = (f"CT chest. Findings: {finding} seen on the axial images. "
                  f"Impression: {finding}.")
        yield SyntheticStudy(study_uid, patient_id, finding, report, datasets)


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_files(datasets: list[Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def multipart_related(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A STOW-RS body of ``(content type, bytes)`` parts, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for content_type, data in parts:
        body.write(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode())
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f'multipart/related; type="application/dicom"; boundary={boundary}'
