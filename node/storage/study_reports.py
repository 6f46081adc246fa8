"""The catalog's ``reports`` table: one report (text and labels) per study, and full-text
search over it: BM25 over ``reports_fts`` (FTS5, kept in step by triggers) on SQLite,
``ts_rank_cd`` over the generated ``text_tsv`` column on PostgreSQL (the schema is in
:mod:`node.storage._schema`; docs/postgres.md §3 says how the two rankings differ).

This module is the table's one owner. :mod:`node.storage` creates it with the rest of
the catalog (the schema lives beside ``studies``, and deleting a study removes its
report in the same transaction); everything else — extraction at ingest, the CSV
import, the similar-case answers, the REST route — reads and writes it through the
functions here. What a report *is* and where it comes from (SR, PDF, import) is
:mod:`node.reporting`'s concern.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from database import Connection, DialectValues, dialect_of, retrying

__all__ = [
    "Report",
    "ReportSourceValues",
    "attach_report",
    "attach_reports",
    "get_report",
    "get_reports",
    "report_instances_to_extract",
    "search_reports",
    "studies_for_report_key",
    "unique_labels",
]

#: rows per ``IN (…)`` query (SQLite's default limit of host parameters is far above)
_CHUNK = 500


class ReportSourceValues(str, Enum):
    """Where a study's report came from (the ``reports.source`` column)."""

    SR = "sr"
    PDF = "pdf"
    IMPORT = "import"


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


def unique_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """``labels`` stripped, without empties, each once (case-insensitively; the first
    spelling is kept), in their order."""
    seen: dict[str, str] = {}
    for label in labels:
        label = label.strip()
        if label and label.casefold() not in seen:
            seen[label.casefold()] = label
    return tuple(seen.values())


# ------------------------------------------------------------------ writing


def attach_report(conn: Connection, report: Report) -> None:
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


def attach_reports(conn: Connection, reports: Iterable[Report]) -> None:
    """Write several reports in one transaction (all or none; run again when it collides
    with a concurrent one)."""
    batch = list(reports)

    def write(conn: Connection) -> None:
        for report in batch:
            attach_report(conn, report)

    retrying(conn, write)


# ------------------------------------------------------------------ reading


def _row_report(row: Any) -> Report:
    try:
        labels = tuple(str(x) for x in json.loads(row["labels"] or "[]"))
    except ValueError:
        labels = ()
    return Report(row["study_instance_uid"], row["text"], labels,
                  ReportSourceValues(row["source"]), row["sop_instance_uid"])


def get_report(conn: Connection, study_instance_uid: str) -> Report | None:
    """The study's report, or ``None`` when it has none."""
    row = conn.execute(
        "SELECT * FROM reports WHERE study_instance_uid = ?", (study_instance_uid,)
    ).fetchone()
    return _row_report(row) if row is not None else None


def get_reports(conn: Connection, study_uids: Iterable[str]) -> dict[str, Report]:
    """The reports of several studies at once (those that have one)."""
    uids = list(dict.fromkeys(study_uids))
    found: dict[str, Report] = {}
    for start in range(0, len(uids), _CHUNK):
        chunk = uids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT * FROM reports WHERE study_instance_uid IN ({marks})", chunk
        ):
            found[row["study_instance_uid"]] = _row_report(row)
    return found


def _words(text: str) -> list[str]:
    """The words of a search (``\\w+``, at most 64), the same on both dialects."""
    return re.findall(r"\w+", text)[:64]


def _fts_query(words: list[str]) -> str:
    """An FTS5 query matching any of ``words`` (each quoted)."""
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words)


def _tsquery(words: list[str]) -> str:
    """A ``to_tsquery`` text matching any of ``words`` (each quoted as a lexeme, so no
    word is read as an operator)."""
    return " | ".join("'" + w.replace("'", "") + "'" for w in words)


def search_reports(conn: Connection, text: str, limit: int) -> list[str]:
    """Study UIDs whose report holds any word of ``text``, best first: BM25 on SQLite,
    ``ts_rank_cd`` (cover density, normalised by the report's length) on PostgreSQL; ties
    in report order."""
    words = _words(text)
    if not words:
        return []
    if dialect_of(conn) is DialectValues.SQLITE:
        rows = conn.execute(
            """SELECT r.study_instance_uid FROM reports_fts
               JOIN reports r ON r.rowid = reports_fts.rowid
               WHERE reports_fts MATCH ? ORDER BY bm25(reports_fts) LIMIT ?""",
            (_fts_query(words), limit),
        ).fetchall()
    else:
        rows = conn.execute(
            """SELECT r.study_instance_uid FROM reports r,
                      to_tsquery('simple', ?) AS q
               WHERE r.text_tsv @@ q
               ORDER BY ts_rank_cd(r.text_tsv, q, 1) DESC, r.rowid LIMIT ?""",
            (_tsquery(words), limit),
        ).fetchall()
    return [str(r[0]) for r in rows]


def report_instances_to_extract(conn: Connection, sop_class_uids: Iterable[str]
                                ) -> list[tuple[str, str]]:
    """(SOP Instance UID, path) of the stored instances of ``sop_class_uids`` whose study
    has no report row written after the instance was received, oldest first."""
    classes = list(sop_class_uids)
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
    return [(str(r[0]), str(r[1])) for r in rows]


def studies_for_report_key(conn: Connection, *, study_instance_uid: str = "",
                           accession_number: str = "") -> list[str]:
    """The stored studies a report keyed by Study Instance UID (preferred) or by
    Accession Number belongs to (an accession number may name several)."""
    if study_instance_uid:
        rows = conn.execute("SELECT study_instance_uid FROM studies "
                            "WHERE study_instance_uid = ?", (study_instance_uid,)).fetchall()
    elif accession_number:
        rows = conn.execute("SELECT study_instance_uid FROM studies "
                            "WHERE accession_number = ?", (accession_number,)).fetchall()
    else:
        return []
    return [str(r[0]) for r in rows]
