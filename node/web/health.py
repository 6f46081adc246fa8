"""``GET /health``: how the node is, and what it is doing.

``status`` is one of :class:`HealthValues`, in the manner of the health endpoints of
comparable servers (Spring Boot's ``UP``/``DOWN``, the IETF draft's
``pass``/``warn``/``fail``): a node that is ``degraded`` (or ``rebuilding`` its index
with a new model) still receives and stores — the PACS must keep sending — so it
answers 200 like ``ok``, and ``reasons`` says what does not work and what to do; only
``starting`` (nothing accepted yet) answers 503.
"""

from __future__ import annotations

import shutil
from enum import Enum
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from indexer import queue
from node.runtime import ModelStatusValues, Services
from node.storage import holdings
from node.web._deps import ServicesDep

__all__ = ["HealthValues", "node_status", "router"]

router = APIRouter(tags=["health"])


class HealthValues(str, Enum):
    """The node's health, as ``GET /health`` says it."""

    OK = "ok"  #: everything works (200)
    DEGRADED = "degraded"  #: receives and stores, but something does not work (200)
    #: receives and stores; the index is being rebuilt with a new model, similar-case
    #: queries wait for it (200)
    REBUILDING = "rebuilding"
    STARTING = "starting"  #: does not accept associations yet (503)


def _reasons(services: Services) -> list[str]:
    """What does not work now, each in one line that says what to do."""
    reasons = []
    model = services.model
    if model.status is ModelStatusValues.UNAVAILABLE:
        reasons.append(f"the model is unavailable, similar-case queries are refused: "
                       f"{model.reason}")
    elif model.status is ModelStatusValues.LOADING:
        reasons.append("the model is loading: similar-case queries are refused until it "
                       "is ready")
    elif model.status is ModelStatusValues.REBUILDING:
        reasons.append(f"similar-case queries are refused until the rebuild is done: "
                       f"{model.reason}")
    node = services.settings.node
    reserve = node.free_space_reserve_mb * 1024 * 1024
    if reserve:
        free = shutil.disk_usage(node.data_dir).free
        if free < reserve:
            reasons.append(f"the data folder's disk has {free // 2**20} MiB free, under "
                           f"[node] free_space_reserve_mb ({node.free_space_reserve_mb}): "
                           "instances are refused until space is freed")
    return reasons


def node_status(services: Services) -> dict[str, Any]:
    """The node's state, as /health answers it."""
    conn = services.connections.get()
    settings = services.settings
    studies, instances = holdings.catalog_counts(conn)
    reasons = _reasons(services)
    if not services.dimse_ready.is_set():
        status = HealthValues.STARTING
    elif services.model.status is ModelStatusValues.REBUILDING:
        status = HealthValues.REBUILDING
    else:
        status = HealthValues.DEGRADED if reasons else HealthValues.OK
    return {
        "status": status.value,
        "reasons": reasons,
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
    starting = body["status"] == HealthValues.STARTING.value
    return JSONResponse(body, status_code=503 if starting else 200)
