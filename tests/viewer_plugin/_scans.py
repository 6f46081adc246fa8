"""Real scans for the viewer's tests and screenshots: CT, MR and CR images from the
``pydicom-data`` package (and pydicom's own CT_small), each stored on the node as a
study of its own patient (new UIDs, invented names, dates and accession numbers)
with a radiology report as a Comprehensive SR (highdicom) carrying a coded finding.

Everything goes to the node through its public interface (STOW-RS), as a PACS would
send it. The reports are written for these tests; the images are the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
from dicomweb_client.api import DICOMwebClient
from highdicom.sr import (
    CodeContentItem,
    CodedConcept,
    ComprehensiveSR,
    ContainerContentItem,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom import Dataset
from pydicom.uid import generate_uid

FINDING = CodedConcept("121071", "DCM", "Finding")
FINDINGS = CodedConcept("121070", "DCM", "Findings")
IMPRESSION = CodedConcept("121073", "DCM", "Impression")
REPORT = CodedConcept("18748-4", "LN", "Diagnostic Imaging Report")
#: the dates of the real scans (the synthetic studies are dated 2024-01-01)
SCAN_YEAR = 2025


@dataclass(frozen=True)
class Scan:
    """One real image, and the study it becomes on the node."""

    file: str
    patient_name: str
    patient_id: str
    accession: str
    study_date: str
    description: str  # "" leaves the study without a description
    body_part: str
    finding: str
    findings: str
    impression: str


SCANS = (
    Scan("RG1_UNCR.dcm", "Moreau^Claire", "SC-0001", "CR2506140001", "20250614",
         "XR chest PA", "CHEST", "Normal",
         "The lungs are clear. No pneumothorax, no pleural effusion. Heart size is normal.",
         "Normal chest radiograph."),
    Scan("RG1_UNCI.dcm", "Lefebvre^Paul", "SC-0002", "CR2503020002", "20250302",
         "XR chest PA", "CHEST", "Normal",
         "Clear lungs, sharp costophrenic angles, normal mediastinal contours.",
         "Normal chest radiograph."),
    Scan("RG3_UNCR.dcm", "Garcia^Ana", "SC-0003", "CR2504050003", "20250405",
         "XR tibia and fibula", "LEG", "Non-ossifying fibroma",
         "Eccentric well-defined lucent lesion of the distal tibial metaphysis with a thin "
         "sclerotic rim; no periosteal reaction.",
         "Non-ossifying fibroma."),
    Scan("RG3_UNCI.dcm", "Rossi^Luca", "SC-0004", "CR2501180004", "20250118",
         "XR tibia and fibula", "LEG", "Non-ossifying fibroma",
         "Cortically based lucent lesion with a sclerotic margin in the distal tibia.",
         "Non-ossifying fibroma; no follow-up needed."),
    Scan("693_UNCR.dcm", "Nakamura^Ken", "SC-0005", "CT2505100005", "20250510",
         "", "HEAD", "Normal",
         "No haemorrhage, no mass effect, no midline shift.",
         "Normal CT of the head without contrast."),
    Scan("693_UNCI.dcm", "Okafor^Ada", "SC-0006", "CT2502210006", "20250221",
         "CT head", "HEAD", "Normal",
         "Ventricles and sulci normal for age. No haemorrhage.",
         "Normal CT of the head."),
    Scan("CT_small.dcm", "Schmidt^Eva", "SC-0007", "CT2503070007", "20250307",
         "CT chest", "CHEST", "Normal",
         "No pulmonary nodule, no effusion; the thoracic spine is intact.",
         "Normal CT of the chest."),
    Scan("MR-SIEMENS-DICOM-WithOverlays.dcm", "Kowalski^Jan", "SC-0008", "MR2501150008",
         "20250115", "MR abdomen liver", "ABDOMEN", "Liver lesion",
         "A well-defined lesion in the right lobe of the liver, bright on T2.",
         "Liver lesion, likely a haemangioma."),
    Scan("MR2_UNCR.dcm", "Silva^Joao", "SC-0009", "MR2505200009", "20250520",
         "MR shoulder", "SHOULDER", "Normal",
         "Rotator cuff tendons intact, no effusion, normal labrum.",
         "Normal MR of the shoulder."),
    Scan("MR2_UNCI.dcm", "Andersen^Freya", "SC-0010", "MR2502280010", "20250228",
         "MR shoulder", "SHOULDER", "Normal",
         "No tear of the rotator cuff; acromioclavicular joint normal.",
         "Normal MR of the shoulder."),
)


@dataclass(frozen=True)
class StoredScan:
    scan: Scan
    study_instance_uid: str
    modality: str


def _folders() -> Iterator[Path]:
    import data_store  # type: ignore[import-not-found]  # the pydicom-data package

    yield Path(data_store.__file__).parent / "data"
    yield Path(pydicom.__file__).parent / "data" / "test_files"


def scan_file(name: str) -> Path:
    """A file of pydicom-data or of pydicom's test files, found by globbing their folders."""
    for folder in _folders():
        found = sorted(folder.glob(name))
        if found:
            return found[0]
    raise FileNotFoundError(f"{name} is in neither pydicom-data nor pydicom's test files")


def as_study(scan: Scan) -> Dataset:
    """The real image, as a study of its own (new UIDs, the scan's patient and dates)."""
    ds = pydicom.dcmread(scan_file(scan.file))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName, ds.PatientID = scan.patient_name, scan.patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.AccessionNumber = scan.accession
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = scan.study_date
    ds.StudyTime = ds.SeriesTime = "093000"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.ReferringPhysicianName = "Referring^Doctor"
    ds.BodyPartExamined = scan.body_part
    if scan.description:
        ds.StudyDescription = scan.description
    elif "StudyDescription" in ds:
        del ds.StudyDescription
    for keyword in ("InstitutionName", "OtherPatientIDs", "PatientAddress"):
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def report_of(scan: Scan, image: Dataset) -> Dataset:
    """The scan's report: a Comprehensive SR with the impression and the coded finding."""
    code = "".join(c for c in scan.finding.upper() if c.isalpha())[:16]
    root = ContainerContentItem(name=REPORT)
    root.ContentSequence = [
        TextContentItem(name=FINDINGS, value=scan.findings,
                        relationship_type=RelationshipTypeValues.CONTAINS),
        TextContentItem(name=IMPRESSION, value=scan.impression,
                        relationship_type=RelationshipTypeValues.CONTAINS),
        CodeContentItem(name=FINDING, value=CodedConcept(code, "99TEST", scan.finding),
                        relationship_type=RelationshipTypeValues.CONTAINS),
    ]
    return ComprehensiveSR(evidence=[image], content=root, series_instance_uid=generate_uid(),
                           series_number=90, sop_instance_uid=generate_uid(), instance_number=1,
                           manufacturer="Precedent tests", is_complete=True, is_final=True)


def store_scans(node_url: str, scans: tuple[Scan, ...] = SCANS,
                timeout: float = 120.0) -> tuple[StoredScan, ...]:
    """STOW-RS each scan and its report; wait until every report is attached."""
    client = DICOMwebClient(url=f"{node_url}/dicom-web")
    stored: list[StoredScan] = []
    for scan in scans:
        image = as_study(scan)
        client.store_instances([image, report_of(scan, image)])
        stored.append(StoredScan(scan, str(image.StudyInstanceUID), str(image.Modality)))
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=f"{node_url}/dicom-web", timeout=30) as http:
        for s in stored:
            while http.get(f"/studies/{s.study_instance_uid}/report").status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no report for {s.scan.file} after {timeout} s")
                time.sleep(0.1)
    return tuple(stored)
