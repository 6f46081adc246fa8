"""Which SOP classes carry a study's report, and the report a data set carries.

- Structured Reports (Basic Text, Enhanced, Comprehensive, Comprehensive 3D,
  Extensible SR): the content tree's text and coded findings (:mod:`.sr`);
- Encapsulated PDF: the text of its pages (:mod:`.pdf`), after its Document Title.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    EncapsulatedPDFStorage,
    EnhancedSRStorage,
    ExtensibleSRStorage,
)

from node.errors import ReportError
from node.reporting.pdf import extract_pdf_text
from node.reporting.sr import extract_sr
from node.storage.study_reports import Report, ReportSourceValues

__all__ = ["REPORT_SOP_CLASSES", "extract_report"]

#: SOP classes whose text becomes the study's report
REPORT_SOP_CLASSES: dict[UID, ReportSourceValues] = {
    BasicTextSRStorage: ReportSourceValues.SR,
    EnhancedSRStorage: ReportSourceValues.SR,
    ComprehensiveSRStorage: ReportSourceValues.SR,
    Comprehensive3DSRStorage: ReportSourceValues.SR,
    ExtensibleSRStorage: ReportSourceValues.SR,
    EncapsulatedPDFStorage: ReportSourceValues.PDF,
}


def extract_report(ds: Dataset) -> Report | None:
    """The report carried by an SR or encapsulated PDF data set; ``None`` for other
    SOP classes and for documents without text. Raises :class:`ReportError` when the
    document is malformed."""
    source = REPORT_SOP_CLASSES.get(UID(str(ds.get("SOPClassUID", ""))))
    if source is None:
        return None
    study_uid = str(ds.get("StudyInstanceUID", ""))
    sop_uid = str(ds.get("SOPInstanceUID", "")) or None
    if source is ReportSourceValues.PDF:
        document = ds.get("EncapsulatedDocument")
        if not document:
            raise ReportError("the encapsulated PDF has no Encapsulated Document (0042,0011)")
        text = extract_pdf_text(bytes(document))
        labels: tuple[str, ...] = ()
        title = str(ds.get("DocumentTitle", "")).strip()
        if title and text and not text.startswith(title):
            text = f"{title}\n{text}"
    else:
        text, labels = extract_sr(ds)
    if not text:
        return None
    return Report(study_uid, text, labels, source, sop_uid)
