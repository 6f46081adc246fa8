"""``precedent viewer``: the host viewer with the Find-similar panel (the ``viewer``
extra). The viewer stands apart from the node: it is found at run time, never imported
by the node's modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from node.commands._common import Subcommands

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    viewer = commands.add_parser("viewer", help="the host viewer with the Find-similar panel")
    viewer.add_argument("--url", help="the node's base URL, e.g. http://localhost:8080")
    viewer.add_argument("--token")
    group = viewer.add_mutually_exclusive_group()
    group.add_argument("--study", help="Study Instance UID to open from the node")
    group.add_argument("--accession", help="accession number of the study to open from the node")
    group.add_argument("--folder", type=Path, help="a local folder of DICOM files")
    viewer.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        viewer_main = importlib.import_module("viewer_plugin.host").main
    except ImportError as exc:
        print(f"precedent: the viewer needs the 'viewer' extra ({exc}); "
              "pip install 'precedent[viewer]'", file=sys.stderr)
        return 2
    argv: list[str] = []
    for flag in ("url", "token", "study", "accession", "folder"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag}", str(value)]
    return int(viewer_main(argv) or 0)
