"""``precedent status``: what the node holds and does, whether or not it runs."""

from __future__ import annotations

import argparse
import time
from typing import Any

from node.commands._common import Subcommands, add_location_flags, print_data, settings_from

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    status = commands.add_parser(
        "status", help="what the node holds and does",
        description="Counts, queue, model and index from the data folder's catalog (read "
                    "only: nothing is created), and the running node's state when it owns "
                    "the folder.")
    add_location_flags(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from node.status import offline_status

    data = offline_status(settings_from(args))
    model = data["model"]
    live = data["live"]
    if live is not None:
        node = (f"node {live['ae_title']} (DIMSE {live['dimse_port']}, {live['http_url']}): "
                f"running (pid {data['pid']})")
        if (live["ae_title"], live["dimse_port"]) != (data["ae_title"], data["dimse_port"]):
            node += (f"; its next start: {data['ae_title']} on DIMSE {data['dimse_port']} "
                     "(the catalog's or the environment's settings)")
    else:
        node = (f"node {data['ae_title']} (DIMSE {data['dimse_port']}, HTTP "
                f"{data['http_port']}): not running")
    held = "" if data["catalog"] else " (no catalog here yet: nothing stored)"
    lines = [
        node,
        f"data: {data['data_dir']}: {data['studies']} studies, {data['instances']} instances"
        + held,
        "queue: " + ", ".join(f"{k} {v}" for k, v in data["queue"]["by_state"].items()),
        *(f"  failed: {n} × {why}" for why, n in data["queue"]["failed_reasons"].items()),
        f"model: {model['status']}" + (f": {model['reason']}" if model.get("reason") else "")
        + (f" (image tower on {model['engine']})" if model.get("engine") else ""),
        f"index built with: {data['index_model'] or '(nothing indexed yet)'}",
        *_process_lines(data["processes"]),
    ]
    print_data(data, args.json, "\n".join(lines))
    return 0


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _process_lines(processes: list[dict[str, Any]]) -> list[str]:
    """The processes registered in a PostgreSQL catalog, one line each."""
    if not processes:
        return []
    lines = ["processes (kind, host, pid, since, last seen, alive, model):"]
    for p in processes:
        lines.append(f"  {p['kind']:<6} {p['host']} pid {p['pid']} since {_when(p['started_at'])}"
                     f", seen {_when(p['seen_at'])}, {'alive' if p['alive'] else 'dead'}, "
                     f"{p['model_id'] or 'no model yet'}")
    return lines
