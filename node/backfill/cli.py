"""``precedent backfill …``: start, follow, pause, resume and cancel backfills. The
backfill runs inside the node; these commands act through its admin API (``status``
reads the plan from the catalog when the node is down).

::

    precedent backfill start SOURCE --since DATE [--until DATE] [--modality CT,MR]
                             [--via dimse|dicomweb] [--window HH:MM-HH:MM]
                             [--rate STUDIES_PER_HOUR] [--concurrency N] [--follow]
    precedent backfill status [ID] [--json] [--follow]
    precedent backfill pause|resume|cancel ID

``register(commands)`` adds the group to the ``precedent`` parser; each sub-command
sets ``run``.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from node.errors import NodeNotRunning, UnknownBackfill

if TYPE_CHECKING:
    from node.settings import Settings

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subcommands = argparse._SubParsersAction

__all__ = ["format_status", "register"]

console = Console(stderr=True)
#: how often ``--follow`` asks the node
_FOLLOW_S = 1.0
_STOPPED = ("done", "cancelled", "paused")


def _location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--data-dir", type=Path, help="where files and the catalog live")


def register(commands: Subcommands) -> None:
    """Add ``backfill`` and its sub-commands to the ``precedent`` parser."""
    group = commands.add_parser(
        "backfill", help="pull priors from the PACS (runs inside the node)",
        description="Pull the studies a PACS holds into the node, politely: by date "
                    "windows, only what is missing, within a time window and a rate.")
    actions = group.add_subparsers(dest="action", required=True)

    p = actions.add_parser("start", help="start a backfill from a configured destination")
    _location(p)
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
    p.set_defaults(run=_start)

    p = actions.add_parser("status", help="counts, rate, ETA and failures")
    _location(p)
    p.add_argument("id", nargs="?", type=int, help="one backfill (default: all)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--follow", action="store_true", help="a progress bar until it ends")
    p.set_defaults(run=_status)

    for action, text in (("pause", "pause (the studies in hand finish)"),
                         ("resume", "go on; a finished backfill retries its failures"),
                         ("cancel", "stop for good (what arrived stays)")):
        p = actions.add_parser(action, help=text)
        _location(p)
        p.add_argument("id", type=int)
        p.set_defaults(run=_change)


def _settings(args: argparse.Namespace) -> Settings:
    from node.cli import _settings as settings_from  # the one way commands read settings

    return settings_from(args)


def _api(settings: Settings) -> Any:
    from node.admin_http import NodeApi

    return NodeApi(settings)


# ------------------------------------------------------------------ formatting


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


# ------------------------------------------------------------------ the commands


def _follow(api: Any, job_id: int) -> dict[str, Any]:
    """A progress bar until the backfill is done, cancelled or paused."""
    waiter = threading.Event()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[speed]}"), console=console) as progress:
        task = progress.add_task(f"backfill {job_id}", total=None, speed="")
        while True:
            data: dict[str, Any] = api.get(f"/admin/backfill/{job_id}")
            studies = data["studies"]
            rate = data["rate"]["studies_per_hour"]
            eta = f", ETA {_duration(data['eta_s'])}" if data.get("eta_s") else ""
            progress.update(
                task, total=studies["total"] or None,
                completed=studies["done"] + studies["failed"],
                description=f"backfill {job_id} {data['state']}"
                + (f" ({data['note']})" if data.get("note") else ""),
                speed=f"{rate:.0f} studies/h{eta}" if rate else "")
            if data["state"] in _STOPPED:
                return data
            waiter.wait(_FOLLOW_S)


def _start(args: argparse.Namespace) -> int:
    settings = _settings(args)
    body = {"source": args.source, "since": args.since, "until": args.until,
            "modality": args.modality, "via": args.via, "window": args.window,
            "rate": args.rate, "concurrency": args.concurrency}
    with _api(settings) as api:
        data = api.post("/admin/backfill", {k: v for k, v in body.items() if v is not None})
        print(f"backfill {data['id']} started")
        if args.follow:
            data = _follow(api, data["id"])
        print(format_status(data))
    return 0


def _offline(settings: Settings) -> list[dict[str, Any]]:
    """The plan as the catalog holds it, for when the node is down."""
    from node.backfill import plan
    from node.backfill._schema import ensure_schema
    from node.backfill.progress import job_status
    from node.storage import connect

    conn = connect(settings.db_path)
    try:
        ensure_schema(conn)
        return [job_status(conn, job) for job in plan.list_jobs(conn)]
    finally:
        conn.close()


def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with _api(settings) as api:
        running = api.running()
        if args.follow:
            if not running:
                raise NodeNotRunning(f"the node does not answer at {api.base_url}: start it "
                                     "with `precedent serve` to follow a backfill")
            listed: list[dict[str, Any]] = api.get("/admin/backfill")["backfills"]
            job_id = args.id or (listed[0]["id"] if listed else None)
            if job_id is None:
                print("no backfills")
                return 0
            print(format_status(_follow(api, int(job_id))))
            return 0
        items = api.get("/admin/backfill")["backfills"] if running else _offline(settings)
    if args.id is not None:
        items = [d for d in items if d["id"] == args.id]
        if not items:
            raise UnknownBackfill(f"there is no backfill {args.id}")
    if args.json:
        print(json.dumps(items if args.id is None else items[0], indent=2))
        return 0
    if not running:
        console.print("the node is not running: running backfills go on when it starts")
    print("\n\n".join(format_status(d) for d in items) or "no backfills")
    return 0


def _change(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with _api(settings) as api:
        data = api.post(f"/admin/backfill/{args.id}/{args.action}")
    print(format_status(data))
    return 0
