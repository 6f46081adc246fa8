"""What `precedent status` prints: read from the catalog (never made by reading), and
the model's state from the running node, found through the data folder's lock; on a
PostgreSQL catalog the processes registered in it (:mod:`node.cluster.registry`), and
the model's state from the first live ``serve`` among them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from indexer import queue
from indexer.index import model_identity
from node.data_folder import Owner, OwnerRoleValues, current_owner
from node.settings import Settings

__all__ = ["offline_status"]


def _live(owner: Owner | None) -> dict[str, Any] | None:
    if owner is None or owner.role is not OwnerRoleValues.NODE or not owner.http_url:
        return None
    try:
        with urllib.request.urlopen(f"{owner.http_url}/health", timeout=2) as r:
            return dict(json.load(r))
    except urllib.error.HTTPError as exc:  # 503 while starting: still its state
        try:
            return dict(json.load(exc))
        except ValueError:
            return None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def offline_status(settings: Settings) -> dict[str, Any]:
    """Counts from the catalog (zero when there is none yet); the model's state from
    the running node when one owns the folder and answers."""
    counts: dict[str, Any] = queue.QueueCounts(
        by_state={state.value: 0 for state in queue.WorkStateValues},
        failed_reasons={}, skipped_reasons={}).to_dict()
    studies = instances = 0
    model_id = None
    processes: list[dict[str, object]] = []
    if settings.catalog_exists:
        from node.cluster.registry import list_processes
        from node.storage import connect, holdings

        conn = connect(settings.catalog_target)
        try:
            counts = queue.counts(conn).to_dict()
            studies, instances = holdings.catalog_counts(conn)
            model_id = model_identity(conn)
            processes = [p.as_json() for p in list_processes(conn)]
        finally:
            conn.close()
    owner = (_registered_owner(processes) if settings.shared_catalog
             else current_owner(settings.node.data_dir))
    live = _live(owner)
    if live is not None:
        model = live["model"]
    elif owner is not None:
        model = {"status": "unknown", "reason": f"{owner.describe()} owns the data folder "
                 "but its /health does not answer"}
    else:
        model = {"status": "not running",
                 "reason": "the node is not running; start it with `precedent serve`"}
    return {
        "running": live is not None,
        "pid": owner.pid if owner is not None else None,
        "http_url": owner.http_url if owner is not None else None,
        # what the settings name (the next start), and what the running node uses
        "ae_title": settings.node.ae_title,
        "dimse_port": settings.node.dimse_port,
        "http_port": settings.http.port,
        "live": None if live is None else {"ae_title": live.get("ae_title"),
                                           "dimse_port": live.get("dimse_port"),
                                           "http_url": owner.http_url if owner else None},
        "data_dir": str(settings.node.data_dir),
        "catalog": settings.catalog_exists,
        "studies": studies,
        "instances": instances,
        "queue": counts,
        "index_model": model_id,
        "model": model,
        "processes": processes,
    }


def _registered_owner(processes: list[dict[str, Any]]) -> Owner | None:
    """The first live ``serve`` process of the registry, as the data folder's owner
    card would name it."""
    for p in processes:
        if p["alive"] and p["kind"] == "serve" and p["http_url"]:
            return Owner(pid=int(p["pid"]), role=OwnerRoleValues.NODE,
                         command="precedent serve", http_url=str(p["http_url"]))
    return None
