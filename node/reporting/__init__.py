"""Reports: the text and labels of a study's report, from the documents that carry one.

Along the data path:

- :mod:`.report_document` — which SOP classes carry a report, and the report a data set
  carries: a Structured Report's content tree (:mod:`.sr`) or an Encapsulated PDF's
  text (:mod:`.pdf`);
- :mod:`.extraction` — at ingest, off the network path, and the catch-up at start-up;
- :mod:`.csv_import` — ``precedent reports import FILE.csv``.

The catalog's ``reports`` table (a study's one report, and BM25 search over it) is
owned by :mod:`node.storage.study_reports`; this package reads and writes it there.
"""

from node.reporting.csv_import import ImportSummary, import_reports_csv
from node.reporting.extraction import (
    ReportExtraction,
    catch_up_reports,
    install_report_extraction,
)
from node.reporting.pdf import extract_pdf_text
from node.reporting.report_document import REPORT_SOP_CLASSES, extract_report
from node.reporting.sr import FINDING_CONCEPTS, extract_sr

__all__ = [
    "FINDING_CONCEPTS",
    "REPORT_SOP_CLASSES",
    "ImportSummary",
    "ReportExtraction",
    "catch_up_reports",
    "extract_pdf_text",
    "extract_report",
    "extract_sr",
    "import_reports_csv",
    "install_report_extraction",
]
