"""``precedent backfill``: start, follow, pause, resume and cancel backfills from the PACS.

::

    precedent backfill start SOURCE --since DATE [--until DATE] [--modality CT,MR]
                             [--via dimse|dicomweb] [--window HH:MM-HH:MM]
                             [--rate STUDIES_PER_HOUR] [--concurrency N] [--follow]
    precedent backfill status [ID] [--json] [--follow]
    precedent backfill pause|resume|cancel ID

A backfill runs inside the node (:mod:`node.backfill`): these commands act through the
running node's admin API (``/admin/backfill…``, found through the data folder's lock,
:func:`~node.commands._common.running_node`) and refuse in one line when it is down;
``status`` then reads the plan from the catalog (and makes none).
"""

from __future__ import annotations

import argparse
import json
import threading
from typing import TYPE_CHECKING, Any

from node.commands._common import (
    Subcommands,
    add_location_flags,
    note,
    progress,
    running_node,
    settings_from,
)
from node.errors import UnknownBackfill
from node.settings import Settings

if TYPE_CHECKING:
    from node.admin_client import AdminClient

__all__ = ["format_status", "register", "run"]

#: how often ``--follow`` asks the node
_FOLLOW_S = 1.0
#: the states a followed backfill stops being followed in
_STOPPED = ("done", "cancelled", "paused")


def register(commands: Subcommands) -> None:
    group = commands.add_parser(
        "backfill", help="pull priors from the PACS (runs inside the node)",
        description="Pull the studies a PACS holds into the node, politely: by date "
                    "windows, only what is missing, within a time window and a rate. The "
                    "backfill runs inside the node; these commands go through it.")
    group.set_defaults(run=run)
    actions = group.add_subparsers(dest="action", required=True)

    p = actions.add_parser("start", help="start a backfill from a configured destination")
    add_location_flags(p)
    p.add_argument("source", help="the PACS: a destination AE title (precedent ae "
                   "destination add)")
    p.add_argument("--since", required=True, help="first study date, YYYY-MM-DD")
    p.add_argument("--until", help="last study date, YYYY-MM-DD (default: today)")
    p.add_argument("--modality", help="comma list, e.g. CT,MR (default: every image "
                   "modality)")
    p.add_argument("--via", choices=["dimse", "dicomweb"], default="dimse",
                   help="C-FIND + C-MOVE/C-GET, or QIDO-RS + WADO-RS (default dimse)")
    p.add_argument("--window", metavar="HH:MM-HH:MM",
                   help="local hours to start studies in; may wrap midnight (22:00-06:00)")
    p.add_argument("--rate", type=float, metavar="STUDIES_PER_HOUR",
                   help="start at most this many studies an hour")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="associations to the PACS at most (default [backfill] concurrency)")
    p.add_argument("--follow", action="store_true", help="show its progress until it ends")

    p = actions.add_parser("status", help="counts, rate, ETA and failures")
    add_location_flags(p)
    p.add_argument("id", nargs="?", type=int, help="one backfill (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--follow", action="store_true", help="a progress bar until it ends")

    for action, text in (("pause", "pause (the studies in hand finish)"),
                         ("resume", "go on; a finished backfill retries its failures"),
                         ("cancel", "stop for good (what arrived stays)")):
        p = actions.add_parser(action, help=text)
        add_location_flags(p)
        p.add_argument("id", type=int)


# -- formatting -------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = int(seconds // 60)
    if minutes >= 60 * 24:
        return f"{minutes // (60 * 24)}d {minutes % (60 * 24) // 60}h"
    if minutes >= 60:
        return f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{minutes}m {int(seconds % 60):02d}s"


def format_status(data: dict[str, Any]) -> str:
    """A backfill's status, for people."""
    studies, windows = data["studies"], data["windows"]
    how = {"move": "C-MOVE", "get": "C-GET", "wado": "WADO-RS"}.get(data["retrieve"], "")
    head = (f"backfill {data['id']}  {data['source']} via {data['via']} ({how})  "
            f"{data['since']}..{data['until']}  "
            f"{','.join(data['modalities']) or 'all image modalities'}")
    limits = [f"{data['concurrency']} association(s)"]
    if data["window"]:
        limits.append(f"window {data['window']}")
    if data["rate_limit"]:
        limits.append(f"at most {data['rate_limit']:g} studies/h")
    lines = [head, "  " + ", ".join(limits),
             f"  {data['state']}" + (f": {data['note']}" if data.get("note") else "")]
    parts = [f"{studies[k]} {k}" for k in ("done", "partial", "failed", "moving", "pending")
             if studies.get(k)]
    lines.append(f"  studies: {', '.join(parts) or 'none yet'} of {studies['total']} "
                 f"(date windows: {windows['done']} of {windows['total']} queried)")
    rate = data["rate"]
    speed = ""
    if rate["studies_per_hour"]:
        speed = (f"; {rate['studies_per_hour']:.1f} studies/h, "
                 f"{rate['instances_per_second']:.1f} instances/s")
    eta = f"; ETA {_duration(data['eta_s'])}" if data.get("eta_s") else ""
    lines.append(f"  instances: {data['instances']['received']} received of "
                 f"{data['instances']['wanted']} wanted{speed}{eta}")
    if data["failure_reasons"]:
        lines.append("  failures:")
        lines += [f"    {n} × {why}" for why, n in data["failure_reasons"].items()]
    return "\n".join(lines)


# -- through the running node -----------------------------------------------------------


def _follow(node: AdminClient, job_id: int) -> dict[str, Any]:
    """A progress bar until the backfill is done, cancelled or paused; its last status."""
    waiter = threading.Event()
    with progress() as bar:
        task = bar.add_task(f"backfill {job_id}", total=None)
        while True:
            data: dict[str, Any] = node.request("GET", f"/admin/backfill/{job_id}")
            studies = data["studies"]
            rate = data["rate"]["studies_per_hour"]
            speed = f", {rate:.0f} studies/h" if rate else ""
            held = f" ({data['note']})" if data.get("note") else ""
            bar.update(task, total=studies["total"] or None,
                       completed=studies["done"] + studies["failed"],
                       description=f"backfill {job_id} {data['state']}{speed}{held}")
            if data["state"] in _STOPPED:
                return data
            waiter.wait(_FOLLOW_S)


def _start(args: argparse.Namespace, settings: Settings) -> int:
    body = {"source": args.source, "since": args.since, "until": args.until,
            "modality": args.modality, "via": args.via, "window": args.window,
            "rate": args.rate, "concurrency": args.concurrency}
    from node.backfill.request import BackfillRequest

    # the flags are checked here first: a mistake is named even while the node is down
    BackfillRequest.build(**{k: v for k, v in body.items() if v is not None})
    with running_node(settings, "a backfill") as node:
        data = node.request("POST", "/admin/backfill",
                            json={k: v for k, v in body.items() if v is not None})
        print(f"backfill {data['id']} started")
        if args.follow:
            data = _follow(node, int(data["id"]))
    print(format_status(data))
    return 0


def _change(args: argparse.Namespace, settings: Settings) -> int:
    with running_node(settings, "a backfill") as node:
        data = node.request("POST", f"/admin/backfill/{args.id}/{args.action}")
    print(format_status(data))
    return 0


# -- status, whether or not the node runs ------------------------------------------------


def _from_catalog(settings: Settings) -> list[dict[str, Any]]:
    """The plan as the catalog holds it (none made when there is no catalog)."""
    if not settings.catalog_exists:
        return []
    from node.backfill import plan
    from node.backfill._schema import ensure_schema
    from node.backfill.progress import job_status
    from node.storage import connect

    conn = connect(settings.catalog_target)
    try:
        ensure_schema(conn)
        return [job_status(conn, job) for job in plan.list_jobs(conn)]
    finally:
        conn.close()


def _node_is_running(settings: Settings) -> bool:
    from node.data_folder import OwnerRoleValues, current_owner

    owner = current_owner(settings.node.data_dir)
    return owner is not None and owner.role is OwnerRoleValues.NODE


def _status(args: argparse.Namespace, settings: Settings) -> int:
    if args.follow or _node_is_running(settings):
        with running_node(settings, "a backfill") as node:
            if args.follow:
                job_id = args.id
                if job_id is None:
                    listed = node.request("GET", "/admin/backfill")["backfills"]
                    if not listed:
                        print("no backfills")
                        return 0
                    job_id = int(listed[0]["id"])
                print(format_status(_follow(node, job_id)))
                return 0
            items: list[dict[str, Any]] = node.request("GET", "/admin/backfill")["backfills"]
    else:
        note("precedent: the node is not running: running backfills go on when it starts")
        items = _from_catalog(settings)
    if args.id is not None:
        items = [d for d in items if d["id"] == args.id]
        if not items:
            raise UnknownBackfill(f"there is no backfill {args.id}: `precedent backfill "
                                  "status` lists them")
    if args.json:
        print(json.dumps(items if args.id is None else items[0], indent=2))
        return 0
    print("\n\n".join(format_status(d) for d in items) or "no backfills")
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.action == "start":
        return _start(args, settings)
    if args.action == "status":
        return _status(args, settings)
    return _change(args, settings)
