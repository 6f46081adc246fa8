"""``precedent import collection FOLDER``: a labelled PNG/JPEG folder into the node.

::

    precedent import collection FOLDER [--name NAME] [--modality CR]
                                [--labels labels.csv] [--captions captions.jsonl]
                                [--patient-from REGEX] [--json]

While the node runs, it does the import itself (``POST /admin/collections/import``; the
folder must be readable by the node). When it is down, the command stores the images
through the same ingest path itself; the node indexes them when it starts.

``register(commands)`` adds the group to the ``precedent`` parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

if TYPE_CHECKING:
    from node.settings import Settings

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subcommands = argparse._SubParsersAction

__all__ = ["format_summary", "register"]

console = Console(stderr=True)
#: the longest an import through the node may take before the command gives up waiting
_IMPORT_TIMEOUT_S = 24 * 3600.0


def register(commands: Subcommands) -> None:
    """Add ``import collection`` to the ``precedent`` parser."""
    group = commands.add_parser("import", help="bring outside data into the node")
    kinds = group.add_subparsers(dest="kind", required=True)
    p = kinds.add_parser(
        "collection", help="a folder of labelled PNG/JPEG images (as Secondary Captures)",
        description="Each image becomes a DICOM Secondary Capture; labels (from sub-folder "
                    "names or a CSV) and captions become the studies' reports.")
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument("--data-dir", type=Path, help="where files and the catalog live")
    p.add_argument("folder", type=Path)
    p.add_argument("--name", help="the collection's name (default: the folder's)")
    p.add_argument("--modality", help="the images' modality, e.g. CR, DX (default OT)")
    p.add_argument("--labels", type=Path, metavar="FILE.csv",
                   help="file,label[,patient,study] rows (default: sub-folder names)")
    p.add_argument("--captions", type=Path, metavar="FILE.jsonl",
                   help='one {"file": …, "caption": …} a line')
    p.add_argument("--patient-from", metavar="REGEX",
                   help="the patient ID in each path: the first group of this expression")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_run)


def format_summary(data: dict[str, Any]) -> str:
    lines = [f"collection {data['collection']}: {data['images']} images, {data['stored']} "
             f"stored, {data['already']} there already; {data['studies']} studies, "
             f"{data['reports']} reports written"]
    lines += [f"  {p['file']}: {p['reason']}" for p in data["problems"]]
    if data.get("labels_file"):
        lines.append(f"evaluate: precedent eval --labels {data['labels_file']}")
    return "\n".join(lines)


def _settings(args: argparse.Namespace) -> Settings:
    from node.cli import _settings as settings_from  # the one way commands read settings

    return settings_from(args)


def _offline(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from node.image_collections.importer import import_collection
    from node.supervisor import build_services

    services = build_services(settings)
    with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("import", total=None)
        summary = import_collection(
            services.ingest, services.connections.get(), args.folder, name=args.name,
            modality=args.modality, labels_csv=args.labels, captions=args.captions,
            patient_from=args.patient_from,
            progress=lambda done, total: progress.update(task, completed=done, total=total))
    return summary.as_json()


def _run(args: argparse.Namespace) -> int:
    from node.admin_http import NodeApi

    settings = _settings(args)
    body = {"folder": str(args.folder.resolve()), "name": args.name,
            "modality": args.modality,
            "labels": str(args.labels.resolve()) if args.labels else None,
            "captions": str(args.captions.resolve()) if args.captions else None,
            "patient_from": args.patient_from}
    with NodeApi(settings) as api:
        if api.running():
            data = api.post("/admin/collections/import",
                            {k: v for k, v in body.items() if v is not None},
                            timeout=_IMPORT_TIMEOUT_S)
        else:
            data = _offline(settings, args)
            console.print("the node is not running: the images are queued and indexed when "
                          "it starts")
    print(json.dumps(data, indent=2) if args.json else format_summary(data))
    return 0
