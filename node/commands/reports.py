"""``precedent reports import``: attach report text and labels from a CSV file."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.commands._common import Subcommands, add_location_flags, settings_from

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    group = commands.add_parser("reports", help="report text and labels")
    group.set_defaults(run=run)
    reports = group.add_subparsers(dest="action", required=True)
    p = reports.add_parser("import", help="attach reports from a CSV file")
    add_location_flags(p)
    p.add_argument("csv", type=Path)


def run(args: argparse.Namespace) -> int:
    from node.reporting import import_reports_csv
    from node.storage import connect

    settings = settings_from(args)
    conn = connect(settings.db_path)
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
