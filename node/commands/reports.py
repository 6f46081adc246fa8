"""``precedent reports import``: attach report text and labels from a CSV file, through
the running node when it is up (``POST /admin/reports/import``), else into the catalog
with the data folder's lock held."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.commands._common import (
    Subcommands,
    add_location_flags,
    data_folder_writer,
    require_catalog,
    settings_from,
)

__all__ = ["register", "run"]

CSV_HELP = """\
The CSV file has a header row. Each row names its study by a StudyInstanceUID or an
AccessionNumber column (either, per row), and has a text column (the report) and,
optionally, a labels column (findings, separated by |). An import replaces the report a
study had. Example:

  AccessionNumber,text,labels
  ACC123,"Right apical pneumothorax, no effusion.",pneumothorax
"""


def register(commands: Subcommands) -> None:
    group = commands.add_parser("reports", help="report text and labels")
    group.set_defaults(run=run)
    reports = group.add_subparsers(dest="action", required=True)
    p = reports.add_parser("import", help="attach reports from a CSV file",
                           description=CSV_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_location_flags(p)
    p.add_argument("csv", type=Path, help="the CSV file (columns above)")


def run(args: argparse.Namespace) -> int:
    from node.reporting import import_reports_csv
    from node.reporting.csv_import import ImportSummary
    from node.storage import connect

    settings = settings_from(args)
    if not args.csv.is_file():
        raise ValueError(f"{args.csv} is not a file")
    require_catalog(settings)  # reports attach to stored studies: none, nothing to do
    with data_folder_writer(settings, "reports import") as node:
        if node is not None:
            answer = node.request("POST", "/admin/reports/import",
                                  content=args.csv.read_bytes(),
                                  headers={"Content-Type": "text/csv"})
            summary = ImportSummary(
                rows=answer["rows"], matched=answer["matched"],
                unmatched=[(u["line"], u["key"]) for u in answer["unmatched"]],
                invalid=[(i["line"], i["reason"]) for i in answer["invalid"]])
        else:
            conn = connect(settings.catalog_target)
            try:
                summary = import_reports_csv(conn, args.csv)
            finally:
                conn.close()
    print(summary)
    for line, key in summary.unmatched[:20]:
        print(f"  line {line}: no study on the node for {key}")
    for line, reason in summary.invalid[:20]:
        print(f"  line {line}: {reason}")
    return 0 if summary.matched or not summary.rows else 1
