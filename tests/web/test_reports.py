"""Reports: text and labels from SR (highdicom-built) and encapsulated PDF documents,
attached at ingest, caught up after a crash, imported from CSV, served as JSON."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from highdicom.sr import (
    CodeContentItem,
    CodedConcept,
    ComprehensiveSR,
    ContainerContentItem,
    EnhancedSR,
    NumContentItem,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    BasicTextSRStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from database import Target
from node.errors import ReportError
from node.reporting import catch_up_reports, extract_report, import_reports_csv
from node.storage import Ingest, connect
from node.storage.study_reports import ReportSourceValues, get_report, search_reports
from tests._peers import storescu
from tests._synthetic import ct_instance, to_bytes
from tests.conftest import RunningNode
from tests.web._helpers import PROBLEM_JSON, minimal_pdf, store, write_reports_csv

CONTAINS = RelationshipTypeValues.CONTAINS
PNEUMOTHORAX = CodedConcept("36118008", "SCT", "Pneumothorax")
FINDING = CodedConcept("121071", "DCM", "Finding")


def comprehensive_sr(*, study_uid: str, patient_id: str, text: str,
                     finding: CodedConcept | None = PNEUMOTHORAX, enhanced: bool = False,
                     accession: str = "ACC-SR") -> Dataset:
    """A real SR document (highdicom): a report container with an impression (TEXT),
    a size (NUM) and, when given, a coded finding (CODE, concept name "Finding")."""
    evidence = ct_instance(study_uid=study_uid, series_uid=generate_uid(),
                           patient_id=patient_id, size=16)
    evidence.AccessionNumber = accession
    items = [
        TextContentItem(name=CodedConcept("121073", "DCM", "Impression"), value=text,
                        relationship_type=CONTAINS),
        NumContentItem(name=CodedConcept("410668003", "SCT", "Length"), value=12,
                       unit=CodedConcept("mm", "UCUM", "millimeter"),
                       relationship_type=CONTAINS),
    ]
    if finding is not None:
        items.append(CodeContentItem(name=FINDING, value=finding, relationship_type=CONTAINS))
    root = ContainerContentItem(name=CodedConcept("18748-4", "LN", "Diagnostic Imaging Report"))
    root.ContentSequence = items
    cls = EnhancedSR if enhanced else ComprehensiveSR
    return cls(evidence=[evidence], content=root, series_instance_uid=generate_uid(),
               series_number=90, sop_instance_uid=generate_uid(), instance_number=1,
               manufacturer="Tests", is_complete=True, is_final=True)


def pdf_report(*, study_uid: str, patient_id: str, lines: list[str]) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientID, ds.PatientName = patient_id, "Pdf^Patient"
    ds.Modality, ds.InstanceNumber, ds.SeriesNumber = "DOC", 1, 99
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Radiology report"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    data = minimal_pdf(lines)
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    return ds


# ------------------------------------------------------------------ extraction


def test_comprehensive_sr_text_and_coded_finding() -> None:
    sr = comprehensive_sr(study_uid=generate_uid(), patient_id="P1",
                          text="Large right pneumothorax.")
    report = extract_report(sr)
    assert report is not None and report.source is ReportSourceValues.SR
    assert "Impression: Large right pneumothorax." in report.text
    assert "Length: 12 millimeter" in report.text
    assert "Finding: Pneumothorax" in report.text
    assert report.labels == ("Pneumothorax",)
    assert report.study_instance_uid == sr.StudyInstanceUID
    assert report.sop_instance_uid == sr.SOPInstanceUID


def test_enhanced_and_basic_text_sr() -> None:
    sr = comprehensive_sr(study_uid=generate_uid(), patient_id="P1", text="Small nodule.",
                          finding=CodedConcept("27925004", "SCT", "Nodule"), enhanced=True)
    report = extract_report(sr)
    assert report is not None and report.labels == ("Nodule",)
    basic = comprehensive_sr(study_uid=generate_uid(), patient_id="P1", text="No findings.",
                             finding=None)
    basic.SOPClassUID = basic.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    report = extract_report(basic)
    assert report is not None and "No findings." in report.text and report.labels == ()


def test_pdf_text() -> None:
    ds = pdf_report(study_uid=generate_uid(), patient_id="P2",
                    lines=["Chest CT", "Impression: left pleural effusion (moderate)."])
    report = extract_report(ds)
    assert report is not None and report.source is ReportSourceValues.PDF
    assert "left pleural effusion (moderate)" in report.text
    assert report.text.startswith("Radiology report")


def test_other_objects_give_no_report_and_broken_pdf_says_why() -> None:
    assert extract_report(ct_instance(study_uid=generate_uid(), series_uid=generate_uid(),
                                      patient_id="P3", size=8)) is None
    ds = pdf_report(study_uid=generate_uid(), patient_id="P2", lines=["x"])
    ds.EncapsulatedDocument = b"%PDF-1.4 garbage" * 3
    with pytest.raises(ReportError, match="PDF cannot be read"):
        extract_report(ds)


# ------------------------------------------------------------------ at ingest, on a node


def _wait_report(node: RunningNode, study_uid: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    with node.http() as http:
        while True:
            response = http.get(f"/dicom-web/studies/{study_uid}/report")
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
            time.sleep(0.1)


def test_sr_sent_by_c_store_becomes_the_study_report(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node: RunningNode = make_node()
    study_uid = generate_uid()
    sr = comprehensive_sr(study_uid=study_uid, patient_id="PSR",
                          text="Moderate left pneumothorax.")
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    result = storescu(node.dimse_port, [path], called=node.ae_title)
    assert result.returncode == 0, result.stderr
    response = _wait_report(node, study_uid)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["StudyInstanceUID"] == study_uid
    assert body["source"] == "sr" and body["labels"] == ["Pneumothorax"]
    assert "Moderate left pneumothorax." in body["text"]


def test_pdf_report_and_a_later_sr_replaces_it(make_node) -> None:  # type: ignore[no-untyped-def]
    node: RunningNode = make_node()
    study_uid = generate_uid()
    store(node, [pdf_report(study_uid=study_uid, patient_id="PPDF",
                            lines=["Impression: effusion."])])
    body = _wait_report(node, study_uid).json()
    assert body["source"] == "pdf" and "effusion" in body["text"] and body["labels"] == []
    time.sleep(0.01)
    store(node, [comprehensive_sr(study_uid=study_uid, patient_id="PPDF", text="Revised.")])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = _wait_report(node, study_uid).json()
        if body["source"] == "sr":
            break
        time.sleep(0.1)
    assert body["source"] == "sr" and "Revised." in body["text"]


def test_report_route_errors(make_node) -> None:  # type: ignore[no-untyped-def]
    node: RunningNode = make_node()
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="PN",
                     size=16)
    store(node, [ds])
    with node.http() as http:
        response = http.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/report")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert "has no report" in response.json()["detail"]
        response = http.get("/dicom-web/studies/1.2.3.4/report")
        assert response.status_code == 404
        assert "not on this node" in response.json()["detail"]
        assert http.get("/dicom-web/studies/abc/report").status_code == 400


# ------------------------------------------------------------------ catch-up, import


def _bare_ingest(folder: Path, catalog: Target) -> Ingest:
    return Ingest(data_dir=folder, catalog=catalog)


def test_catch_up_attaches_what_a_crash_left_out(tmp_path: Path, catalog_target: Target
                                                 ) -> None:
    ingest = _bare_ingest(tmp_path, catalog_target)  # no listener: as if the node died before extracting
    study_a, study_b = generate_uid(), generate_uid()
    ingest.store(to_bytes(comprehensive_sr(study_uid=study_a, patient_id="A", text="One.")),
                 source="X")
    ingest.store(to_bytes(pdf_report(study_uid=study_b, patient_id="B", lines=["Two."])),
                 source="X")
    ingest.store(to_bytes(ct_instance(study_uid=study_a, series_uid=generate_uid(),
                                      patient_id="A", size=8)), source="X")
    conn = connect(catalog_target)
    stopped = threading.Event()
    stopped.set()
    assert catch_up_reports(conn, tmp_path, stop=stopped) == 0  # left for the next start
    assert get_report(conn, study_a) is None
    assert catch_up_reports(conn, tmp_path) == 2
    assert get_report(conn, study_a).text.endswith("Finding: Pneumothorax")  # type: ignore[union-attr]
    assert "Two." in get_report(conn, study_b).text  # type: ignore[union-attr]
    assert catch_up_reports(conn, tmp_path) == 0  # done once


def test_import_csv_by_uid_and_accession(tmp_path: Path, catalog_target: Target) -> None:
    ingest = _bare_ingest(tmp_path, catalog_target)
    a = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="A", size=8)
    b = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="B", size=8)
    for ds in (a, b):
        ingest.store(to_bytes(ds), source="X")
    csv_path = write_reports_csv(tmp_path / "r.csv", [
        {"StudyInstanceUID": a.StudyInstanceUID, "text": "Pneumothorax right.",
         "labels": "pneumothorax|chest drain"},
        {"AccessionNumber": "ACCB", "text": "Normal chest.", "labels": ""},
        {"StudyInstanceUID": "1.2.3.4", "text": "Unknown study."},
        {"AccessionNumber": "NOPE", "text": "Unknown accession."},
        {"StudyInstanceUID": "", "text": "no key"},
        {"StudyInstanceUID": b.StudyInstanceUID, "text": ""},
    ])
    conn = connect(catalog_target)
    summary = import_reports_csv(conn, csv_path)
    assert (summary.rows, summary.matched) == (6, 2)
    assert summary.unmatched == [(4, "1.2.3.4"), (5, "AccessionNumber=NOPE")]
    assert [line for line, _ in summary.invalid] == [6, 7]
    assert str(summary) == "6 rows: 2 matched, 2 unmatched, 2 invalid"
    report = get_report(conn, a.StudyInstanceUID)
    assert report is not None and report.labels == ("pneumothorax", "chest drain")
    assert report.source is ReportSourceValues.IMPORT
    assert get_report(conn, b.StudyInstanceUID).text == "Normal chest."  # type: ignore[union-attr]
    # the full-text index follows (FTS5 on SQLite, the tsvector on PostgreSQL)
    assert search_reports(conn, "pneumothorax", 10) == [a.StudyInstanceUID]


def test_import_csv_errors(tmp_path: Path, catalog_target: Target) -> None:
    conn = connect(catalog_target)
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,report\n1.2,x\n")
    with pytest.raises(ReportError, match="StudyInstanceUID or AccessionNumber, and text"):
        import_reports_csv(conn, bad)
    with pytest.raises(ReportError, match="does not exist"):
        import_reports_csv(conn, tmp_path / "missing.csv")
