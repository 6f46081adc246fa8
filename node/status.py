"""What `precedent status` prints: read from the catalog, whether or not the node runs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from indexer import queue
from indexer.index import model_identity
from node.settings import Settings
from node.storage import connect

__all__ = ["offline_status"]


def _live(settings: Settings) -> dict[str, Any] | None:
    host = "127.0.0.1" if settings.http.host in ("0.0.0.0", "::") else settings.http.host
    try:
        with urllib.request.urlopen(f"http://{host}:{settings.http.port}/health", timeout=2) as r:
            return dict(json.load(r))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def offline_status(settings: Settings) -> dict[str, Any]:
    """Counts from the catalog; the model's state from the running node when it answers."""
    conn = connect(settings.db_path)
    try:
        counts = queue.counts(conn).to_dict()
        studies = conn.execute("SELECT count(*) FROM studies").fetchone()[0]
        instances = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
        model_id = model_identity(conn)
    finally:
        conn.close()
    live = _live(settings)
    return {
        "running": live is not None,
        "ae_title": settings.node.ae_title,
        "dimse_port": settings.node.dimse_port,
        "http_port": settings.http.port,
        "data_dir": str(settings.node.data_dir),
        "studies": studies,
        "instances": instances,
        "queue": counts,
        "index_model": model_id,
        "model": live["model"] if live else {
            "status": "not running",
            "reason": "the node is not running; start it with `precedent serve`",
        },
    }
