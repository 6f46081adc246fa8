"""Shared by the tests of the similar-case extension, reports and KOS: a node holding
synthetic studies with imported reports, and small report documents (SR, PDF)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from node.reporting import import_reports_csv
from tests._synthetic import SyntheticStudy, ct_instance, make_studies, to_bytes
from tests.conftest import RunningNode

PROBLEM_JSON = "application/problem+json"
DICOM_JSON = "application/dicom+json"
# the PRECEDENT private block, at (0011,10xx)
CREATOR, SCORE, RANK, BEST, REPORT, REPORT_URL, LABELS, BEST_SERIES = (
    "00110010", "00111001", "00111002", "00111003", "00111004", "00111005", "00111006",
    "00111007")


@dataclass
class Catalogue:
    """What a populated node holds."""

    node: RunningNode
    studies: list[SyntheticStudy]
    #: a second study of studies[0]'s patient
    same_patient_study: str
    same_patient_series: str
    extra: dict[str, Any] = field(default_factory=dict)

    def by_uid(self, uid: str) -> SyntheticStudy | None:
        return next((s for s in self.studies if s.study_instance_uid == uid), None)


def store(node: RunningNode, datasets: Sequence[Dataset], source: str = "TESTSCU") -> None:
    for ds in datasets:
        node.services.ingest.store(to_bytes(ds), source=source)


def write_reports_csv(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["StudyInstanceUID", "AccessionNumber",
                                                    "text", "labels"])
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def populate(node: RunningNode, folder: Path, *, n_studies: int = 8) -> Catalogue:
    studies = list(make_studies(n_studies, instances_per_study=2, size=48))
    for study in studies:
        store(node, study.datasets)
    first = studies[0]
    same_study, same_series = generate_uid(), generate_uid()
    store(node, [ct_instance(study_uid=same_study, series_uid=same_series,
                             patient_id=first.patient_id, finding=first.finding, size=48,
                             seed=4242, study_date="20240301")])
    rows = [{"StudyInstanceUID": s.study_instance_uid, "text": s.report,
             "labels": s.finding} for s in studies]
    summary = import_reports_csv(node.services.connections.get(),
                                 write_reports_csv(folder / "reports.csv", rows))
    assert summary.matched == len(studies)
    node.wait_indexed()
    return Catalogue(node, studies, same_study, same_series)


def first_value(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def minimal_pdf(lines: Sequence[str]) -> bytes:
    """A one-page PDF with ``lines`` of text (Helvetica), offsets computed exactly."""
    ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
         b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)
