"""``GET /health``: 200 once the node accepts associations, with what it is doing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from indexer import queue
from node.runtime import ModelStatusValues, Services
from node.web._deps import ServicesDep

__all__ = ["node_status", "router"]

router = APIRouter(tags=["health"])


def node_status(services: Services) -> dict[str, Any]:
    """The node's state, as `precedent status` and /health print it."""
    conn = services.connections.get()
    settings = services.settings
    studies = conn.execute("SELECT count(*) FROM studies").fetchone()[0]
    instances = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
    return {
        "status": "starting" if not services.dimse_ready.is_set() else (
            "rebuilding" if services.model.status is ModelStatusValues.REBUILDING else "ok"),
        "ae_title": settings.node.ae_title,
        "dimse_port": settings.node.dimse_port,
        "studies": studies,
        "instances": instances,
        "queue": queue.counts(conn).to_dict(),
        "model": services.model.as_json(),
    }


@router.get("/health")
def health(services: ServicesDep) -> JSONResponse:
    body = node_status(services)
    return JSONResponse(body, status_code=503 if body["status"] == "starting" else 200)
