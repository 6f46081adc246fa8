"""``precedent import``: outside data into the node; today a labelled image collection.

::

    precedent import collection FOLDER [--name NAME] [--modality CR]
                                [--labels labels.csv] [--captions captions.jsonl]
                                [--patient-from REGEX] [--json]

Each PNG/JPEG image becomes a DICOM Secondary Capture; labels (sub-folder names or a
CSV) and captions become the studies' reports (:mod:`node.image_collections`). While
the node owns the data folder it does the import itself, as one of its operations
(``POST /admin/collections/import``, followed with a progress bar; the folder must be
readable by the node's user). When it is down, the command does it with the folder's
lock held (:func:`~node.commands._common.data_folder_writer`), through the same ingest
path; the node indexes the images when it starts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.commands._common import (
    Subcommands,
    add_location_flags,
    data_folder_writer,
    note,
    progress,
    settings_from,
    use_cli_logging,
)
from node.settings import Settings

if TYPE_CHECKING:
    from node.admin_client import AdminClient

__all__ = ["format_summary", "register", "run"]


def register(commands: Subcommands) -> None:
    group = commands.add_parser("import", help="bring outside data into the node: image "
                                "collections")
    group.set_defaults(run=run)
    kinds = group.add_subparsers(dest="kind", required=True)
    p = kinds.add_parser(
        "collection", help="a folder of labelled PNG/JPEG images (as Secondary Captures)",
        description="Each image becomes a DICOM Secondary Capture; labels (from sub-folder "
                    "names or a CSV) and captions become the studies' reports. Importing "
                    "again changes nothing.")
    add_location_flags(p)
    p.add_argument("folder", type=Path)
    p.add_argument("--name", help="the collection's name (default: the folder's)")
    p.add_argument("--modality", help="the images' modality, e.g. CR, DX (default OT)")
    p.add_argument("--labels", type=Path, metavar="FILE.csv",
                   help="file,label[,patient,study] rows (default: sub-folder names)")
    p.add_argument("--captions", type=Path, metavar="FILE.jsonl",
                   help='one {"file": …, "caption": …} a line')
    p.add_argument("--patient-from", metavar="REGEX",
                   help="the patient ID in each path: the first group of this expression")
    p.add_argument("--json", action="store_true", help="print JSON")


def format_summary(data: dict[str, Any]) -> str:
    """An import's summary, for people: counts, then one line per image not used."""
    lines = [f"collection {data['collection']}: {data['images']} images, {data['stored']} "
             f"stored, {data['already']} there already; {data['studies']} studies, "
             f"{data['reports']} reports written"]
    lines += [f"  {p['file']}: {p['reason']}" for p in data["problems"]]
    if data.get("labels_file"):
        lines.append(f"evaluate: precedent eval --labels {data['labels_file']}")
    return "\n".join(lines)


def _absolute(path: Path | None) -> str | None:
    return str(path.expanduser().absolute()) if path is not None else None


def _through_node(node: AdminClient, args: argparse.Namespace) -> dict[str, Any]:
    from node.errors import NodeAdminError

    body = {"folder": _absolute(args.folder), "name": args.name, "modality": args.modality,
            "labels": _absolute(args.labels), "captions": _absolute(args.captions),
            "patient_from": args.patient_from}
    started = node.request("POST", "/admin/collections/import",
                           json={k: v for k, v in body.items() if v is not None})
    with progress() as bar:
        task = bar.add_task("storing", total=started["total"] or None)
        last = node.follow(started, lambda op: bar.update(
            task, total=op["total"] or None, completed=op["done"]))
    if last["state"] == "failed" or last.get("result") is None:
        raise NodeAdminError(f"the node's collection import failed: {last['error']}")
    result: dict[str, Any] = last["result"]
    return result


def _here(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from node.image_collections.importer import import_collection, open_collection
    from node.supervisor import build_services

    opened = open_collection(args.folder, name=args.name, modality=args.modality,
                             labels_csv=args.labels, captions=args.captions,
                             patient_from=args.patient_from)
    services = build_services(settings)
    try:
        with progress() as bar:
            task = bar.add_task("storing", total=len(opened.found.items))
            summary = import_collection(
                services.ingest, services.connections.get(), opened,
                progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        services.connections.close()
        services.ingest.close()
    note("precedent: the node is not running: the images are queued and indexed when it "
         "starts")
    return summary.as_json()


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    use_cli_logging()
    with data_folder_writer(settings, "import collection") as node:
        data = _through_node(node, args) if node is not None else _here(settings, args)
    print(json.dumps(data, indent=2) if args.json else format_summary(data))
    return 0
