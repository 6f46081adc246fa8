"""``precedent reports import FILE.csv``: report text and labels from a CSV file.

Columns: ``StudyInstanceUID`` or ``AccessionNumber`` (either per row), ``text``, and
optionally ``labels`` (``|``-separated). An import replaces the report a study had.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from database import Connection
from node.errors import ReportError
from node.storage.study_reports import (
    Report,
    ReportSourceValues,
    attach_reports,
    studies_for_report_key,
    unique_labels,
)

__all__ = ["ImportSummary", "import_reports_csv"]

log = logging.getLogger(__name__)

_KEY_COLUMNS = ("StudyInstanceUID", "AccessionNumber")


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


def import_reports_csv(conn: Connection, path: Path | str) -> ImportSummary:
    """Attach report text and labels from a CSV file.

    Rows whose study is not on the node are listed as unmatched; all matched rows are
    written in one transaction.
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
        if not study_uid and not accession:
            summary.invalid.append((line, "neither StudyInstanceUID nor AccessionNumber"))
            continue
        found = studies_for_report_key(conn, study_instance_uid=study_uid,
                                       accession_number=accession)
        if not found:
            summary.unmatched.append((line, study_uid or f"AccessionNumber={accession}"))
            continue
        labels = unique_labels(row.get("labels", "").split("|"))
        summary.matched += 1
        reports += [Report(uid, text, labels, ReportSourceValues.IMPORT) for uid in found]
    attach_reports(conn, reports)
    log.info("reports imported file=%s %s", path.name, summary)
    return summary
