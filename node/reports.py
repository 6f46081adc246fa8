"""Reports: the text and labels of a study's report, attached to the study.

Where reports come from (``reports.source``, :class:`ReportSourceValues`):

- ``sr``: a DICOM Structured Report (Basic Text, Enhanced, Comprehensive, Comprehensive
  3D, Extensible SR). The content tree is walked depth first; each TEXT, CODE, NUM,
  DATE/TIME, PNAME and UIDREF item becomes a line ``Concept name: value``, containers
  become headings. CODE items whose concept name is a finding or diagnosis
  (:data:`FINDING_CONCEPTS`) also give a label: the code meaning.
- ``pdf``: an Encapsulated PDF; the text of its pages (pypdf).
- ``import``: ``precedent reports import FILE.csv`` (:func:`import_reports_csv`).

A study has one report: the latest wins (a new SR replaces an older one or an
imported text, and an import replaces what was there). The ``reports_fts`` full-text
table follows the ``reports`` table through triggers.

At ingest, :class:`ReportExtraction` is an :meth:`Ingest.add_listener` listener: on
the network thread it only puts report instances on a one-thread executor; the file
is read and parsed there. :func:`catch_up_reports` (called at start-up) processes
report instances received after their study's report row was written, or whose
study has none: what a crash between the store and the extraction left behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from node.errors import ReportError
from node.storage import StoredInstance, StoreOutcomeValues, ThreadConnections

__all__ = [
    "FINDING_CONCEPTS",
    "REPORT_SOP_CLASSES",
    "ImportSummary",
    "Report",
    "ReportExtraction",
    "ReportSourceValues",
    "attach_report",
    "catch_up_reports",
    "extract_pdf_text",
    "extract_report",
    "extract_sr",
    "get_report",
    "get_reports",
    "import_reports_csv",
    "install",
    "install_report_extraction",
]

log = logging.getLogger(__name__)


class ReportSourceValues(str, Enum):
    """Where a study's report came from (the ``reports.source`` column)."""

    SR = "sr"
    PDF = "pdf"
    IMPORT = "import"


ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"

#: SOP classes whose text becomes the study's report
REPORT_SOP_CLASSES: dict[str, ReportSourceValues] = {
    "1.2.840.10008.5.1.4.1.1.88.11": ReportSourceValues.SR,  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22": ReportSourceValues.SR,  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33": ReportSourceValues.SR,  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34": ReportSourceValues.SR,  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.35": ReportSourceValues.SR,  # Extensible SR
    ENCAPSULATED_PDF: ReportSourceValues.PDF,
}

#: concept names (scheme, code value) of CODE items whose value is a label
FINDING_CONCEPTS: frozenset[tuple[str, str]] = frozenset({
    ("DCM", "121071"),  # Finding
    ("SCT", "404684003"),  # Clinical finding
    ("SRT", "F-00000"),  # Clinical finding (legacy SNOMED-RT)
    ("DCM", "121073"),  # Impression (coded)
    ("SCT", "439401001"),  # Diagnosis
    ("SCT", "282291009"),  # Diagnostic interpretation
    ("DCM", "111023"),  # Differential diagnosis/Impression
})
_FINDING_MEANINGS = frozenset({"finding", "findings", "clinical finding", "diagnosis",
                               "impression", "differential diagnosis/impression"})


@dataclass(frozen=True, slots=True)
class Report:
    """A study's report as the catalog keeps it."""

    study_instance_uid: str
    text: str
    labels: tuple[str, ...] = ()
    source: ReportSourceValues = ReportSourceValues.IMPORT
    sop_instance_uid: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The body of ``GET /studies/{study}/report``."""
        return {
            "StudyInstanceUID": self.study_instance_uid,
            "text": self.text,
            "labels": list(self.labels),
            "source": self.source.value,
        }


# ------------------------------------------------------------------ extraction


def _code_meaning(seq: Any) -> str:
    if not seq:
        return ""
    item = seq[0]
    return str(item.get("CodeMeaning", "") or item.get("CodeValue", "")).strip()


def _concept_key(item: Dataset) -> tuple[str, str] | None:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return None
    code = seq[0]
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue")
    return (str(code.get("CodingSchemeDesignator", "")), str(value or ""))


def _is_finding(item: Dataset) -> bool:
    key = _concept_key(item)
    if key is not None and key in FINDING_CONCEPTS:
        return True
    return _code_meaning(item.get("ConceptNameCodeSequence")).casefold() in _FINDING_MEANINGS


def _num_text(item: Dataset) -> str:
    seq = item.get("MeasuredValueSequence")
    if not seq:
        return ""
    measured = seq[0]
    value: object = measured.get("NumericValue", "")
    with contextlib.suppress(TypeError, ValueError):
        value = format(float(value), "g")  # type: ignore[arg-type]
    unit = _code_meaning(measured.get("MeasurementUnitsCodeSequence"))
    return f"{value} {unit}".strip() if unit and unit != "no units" else str(value)


def _item_value(item: Dataset) -> str:
    kind = str(item.get("ValueType", "")).upper()
    if kind == "TEXT":
        return str(item.get("TextValue", "")).strip()
    if kind == "CODE":
        return _code_meaning(item.get("ConceptCodeSequence"))
    if kind == "NUM":
        return _num_text(item)
    if kind == "DATE":
        return str(item.get("Date", ""))
    if kind == "TIME":
        return str(item.get("Time", ""))
    if kind == "DATETIME":
        return str(item.get("DateTime", ""))
    if kind == "PNAME":
        return str(item.get("PersonName", ""))
    if kind == "UIDREF":
        return str(item.get("UID", ""))
    return ""


def _walk(items: Iterable[Dataset], lines: list[str], labels: list[str], depth: int) -> None:
    for item in items:
        kind = str(item.get("ValueType", "")).upper()
        name = _code_meaning(item.get("ConceptNameCodeSequence"))
        if kind == "CONTAINER":
            if name:
                lines.append(name + ":" if depth else name)
        elif kind in ("IMAGE", "COMPOSITE", "WAVEFORM", "SCOORD", "SCOORD3D", "TCOORD"):
            pass  # references and coordinates carry no report text
        else:
            value = _item_value(item)
            if value:
                lines.append(f"{name}: {value}" if name else value)
                if kind == "CODE" and _is_finding(item):
                    labels.append(value)
        children = item.get("ContentSequence")
        if children:
            _walk(children, lines, labels, depth + 1)


def extract_sr(ds: Dataset) -> tuple[str, tuple[str, ...]]:
    """The text and the labels (coded findings) of an SR document's content tree."""
    lines: list[str] = []
    labels: list[str] = []
    try:
        _walk([ds], lines, labels, 0)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"the SR content tree cannot be read: {exc}") from exc
    # the root container's title is the first line; keep it only with content under it
    text = "\n".join(lines).strip() if len(lines) > 1 else ""
    return text, _unique(labels)


def extract_pdf_text(data: bytes) -> str:
    """The text of every page of a PDF document."""
    import pypdf  # only needed for PDF reports
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ReportError(f"the encapsulated PDF cannot be read: {exc}") from exc
    return "\n".join(p.strip() for p in pages if p.strip()).strip()


def extract_report(ds: Dataset) -> Report | None:
    """The report carried by an SR or encapsulated PDF data set; ``None`` for other
    SOP classes and for documents without text. Raises :class:`ReportError` when the
    document is malformed."""
    source = REPORT_SOP_CLASSES.get(str(ds.get("SOPClassUID", "")))
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


def _unique(labels: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for label in labels:
        label = label.strip()
        if label and label.casefold() not in seen:
            seen[label.casefold()] = label
    return tuple(seen.values())


# ------------------------------------------------------------------ the catalog


def attach_report(conn: sqlite3.Connection, report: Report) -> None:
    """Write ``report`` as its study's report (replacing the one there)."""
    conn.execute(
        """INSERT INTO reports (study_instance_uid, text, labels, source, sop_instance_uid,
               updated_at) VALUES (?,?,?,?,?,?)
           ON CONFLICT(study_instance_uid) DO UPDATE SET text = excluded.text,
               labels = excluded.labels, source = excluded.source,
               sop_instance_uid = excluded.sop_instance_uid,
               updated_at = excluded.updated_at""",
        (report.study_instance_uid, report.text, json.dumps(list(report.labels)),
         report.source.value, report.sop_instance_uid, time.time()),
    )


def _row_report(row: sqlite3.Row) -> Report:
    try:
        labels = tuple(str(x) for x in json.loads(row["labels"] or "[]"))
    except ValueError:
        labels = ()
    return Report(row["study_instance_uid"], row["text"], labels,
                  ReportSourceValues(row["source"]), row["sop_instance_uid"])


def get_report(conn: sqlite3.Connection, study_instance_uid: str) -> Report | None:
    row = conn.execute(
        "SELECT * FROM reports WHERE study_instance_uid = ?", (study_instance_uid,)
    ).fetchone()
    return _row_report(row) if row is not None else None


def get_reports(conn: sqlite3.Connection, study_uids: Iterable[str]) -> dict[str, Report]:
    """The reports of several studies at once (those that have one)."""
    uids = list(dict.fromkeys(study_uids))
    found: dict[str, Report] = {}
    for start in range(0, len(uids), 500):
        chunk = uids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT * FROM reports WHERE study_instance_uid IN ({marks})", chunk
        ):
            found[row["study_instance_uid"]] = _row_report(row)
    return found


def _process_file(conn: sqlite3.Connection, data_dir: Path, relpath: str) -> Report | None:
    path = data_dir / relpath
    try:
        ds = pydicom.dcmread(path)
    except (OSError, ValueError, EOFError, InvalidDicomError) as exc:
        raise ReportError(f"{relpath} cannot be read: {exc}") from exc
    report = extract_report(ds)
    if report is not None:
        attach_report(conn, report)
        log.info("report attached study=%s source=%s sop=%s labels=%d chars=%d",
                 report.study_instance_uid, report.source.value, report.sop_instance_uid,
                 len(report.labels), len(report.text))
    return report


def catch_up_reports(conn: sqlite3.Connection, data_dir: Path) -> int:
    """Extract the reports that a crash (or an old version) left out; return how many
    were attached. A report instance is processed when its study has no report row
    written after the instance was received."""
    classes = list(REPORT_SOP_CLASSES)
    marks = ",".join("?" * len(classes))
    rows = conn.execute(
        f"""SELECT i.sop_instance_uid, i.path FROM instances i
            WHERE i.sop_class_uid IN ({marks})
              AND NOT EXISTS (SELECT 1 FROM reports r
                              WHERE r.study_instance_uid = i.study_instance_uid
                                AND r.updated_at >= i.received_at)
            ORDER BY i.received_at""",
        classes,
    ).fetchall()
    attached = 0
    for row in rows:
        try:
            if _process_file(conn, Path(data_dir), row["path"]) is not None:
                attached += 1
        except ReportError as exc:
            log.warning("report not extracted sop=%s reason=%s", row["sop_instance_uid"], exc)
    if rows:
        log.info("report catch-up instances=%d attached=%d", len(rows), attached)
    return attached


class ReportExtraction:
    """Extracts reports off the network path: :meth:`on_stored` only enqueues."""

    def __init__(self, *, data_dir: Path, db_path: Path) -> None:
        self.data_dir = Path(data_dir)
        self._connections = ThreadConnections(Path(db_path))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports")
        self._pending: set[Future[Any]] = set()

    def on_stored(self, stored: StoredInstance) -> None:
        """The ingest listener: queue a report instance for extraction, nothing more."""
        if stored.sop_class_uid not in REPORT_SOP_CLASSES:
            return
        if stored.outcome is StoreOutcomeValues.DUPLICATE_KEPT:
            return
        self._submit(self._extract, stored.sop_instance_uid, stored.path)

    def catch_up(self) -> Future[Any]:
        """Run :func:`catch_up_reports` on the extraction thread."""
        return self._submit(lambda: catch_up_reports(self._connections.get(), self.data_dir))

    def _submit(self, fn: Any, *args: Any) -> Future[Any]:
        future = self._executor.submit(fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def _extract(self, sop_instance_uid: str, relpath: str) -> None:
        try:
            _process_file(self._connections.get(), self.data_dir, relpath)
        except ReportError as exc:
            log.warning("report not extracted sop=%s reason=%s", sop_instance_uid, exc)
        except Exception:  # the executor thread must survive any one bad document
            log.exception("report extraction failed sop=%s", sop_instance_uid)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until every queued extraction has finished (tests, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            future = next(iter(self._pending), None)
            if future is None:
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            future.result(timeout=left)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


def install_report_extraction(services: Any, *, catch_up: bool = True) -> ReportExtraction:
    """Hook report extraction into ingest (listener) and, with ``catch_up``, process
    what was left out before (in the background). Call once at start-up; call
    ``close()`` on the result at shutdown."""
    settings = services.settings
    extraction = ReportExtraction(data_dir=settings.node.data_dir, db_path=settings.db_path)
    services.ingest.add_listener(extraction.on_stored)
    if catch_up:
        extraction.catch_up()
    return extraction


def install(node: Any) -> None:
    """Start-up hook (``node.app``): extraction at ingest, and the catch-up."""
    node.report_extraction = install_report_extraction(node.services)


# ------------------------------------------------------------------ CSV import


@dataclass
class ImportSummary:
    """What :func:`import_reports_csv` did."""

    rows: int = 0
    matched: int = 0
    #: (line number, key) of rows whose study is not on the node
    unmatched: list[tuple[int, str]] = field(default_factory=list)
    #: (line number, reason) of rows that cannot be used (no key, no text)
    invalid: list[tuple[int, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "matched": self.matched,
            "unmatched": [{"line": n, "key": k} for n, k in self.unmatched],
            "invalid": [{"line": n, "reason": r} for n, r in self.invalid],
        }

    def __str__(self) -> str:
        return (f"{self.rows} rows: {self.matched} matched, {len(self.unmatched)} unmatched, "
                f"{len(self.invalid)} invalid")


_KEY_COLUMNS = ("StudyInstanceUID", "AccessionNumber")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip() for c in reader.fieldnames or ()}
        if not columns & set(_KEY_COLUMNS) or "text" not in columns:
            raise ReportError(
                f"{path}: the header must name StudyInstanceUID or AccessionNumber, and text "
                f"(labels optional, '|'-separated); it names {sorted(columns)}"
            )
        for row in reader:
            clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
            yield reader.line_num, clean


def import_reports_csv(conn: sqlite3.Connection, path: Path | str) -> ImportSummary:
    """Attach report text and labels from a CSV file (``precedent reports import``).

    Columns: ``StudyInstanceUID`` or ``AccessionNumber`` (either per row), ``text``,
    and optionally ``labels`` (``|``-separated). Rows whose study is not on the node are
    listed as unmatched; all matched rows are written in one transaction.
    """
    summary = ImportSummary()
    path = Path(path)
    try:
        rows = list(_rows(path))
    except FileNotFoundError as exc:
        raise ReportError(f"{path} does not exist") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReportError(f"{path} is not a UTF-8 CSV file: {exc}") from exc
    reports: list[Report] = []
    for line, row in rows:
        summary.rows += 1
        study_uid, accession = row.get("StudyInstanceUID", ""), row.get("AccessionNumber", "")
        text = row.get("text", "")
        if not text:
            summary.invalid.append((line, "the text is empty"))
            continue
        if study_uid:
            found = conn.execute("SELECT study_instance_uid FROM studies "
                                 "WHERE study_instance_uid = ?", (study_uid,)).fetchall()
            key = study_uid
        elif accession:
            found = conn.execute("SELECT study_instance_uid FROM studies "
                                 "WHERE accession_number = ?", (accession,)).fetchall()
            key = f"AccessionNumber={accession}"
        else:
            summary.invalid.append((line, "neither StudyInstanceUID nor AccessionNumber"))
            continue
        if not found:
            summary.unmatched.append((line, key))
            continue
        labels = _unique(row.get("labels", "").split("|"))
        summary.matched += 1
        reports += [Report(r[0], text, labels, ReportSourceValues.IMPORT) for r in found]
    conn.execute("BEGIN IMMEDIATE")
    try:
        for report in reports:
            attach_report(conn, report)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    log.info("reports imported file=%s %s", path.name, summary)
    return summary
