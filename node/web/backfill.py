"""Backfill over REST (admin token when configured): the same as ``precedent backfill``.

``POST /admin/backfill`` starts one (201, its status); ``GET /admin/backfill`` lists them
with their status; ``GET /admin/backfill/{id}`` is one's status (counts, rate, ETA,
failures with reasons, and why it waits); ``POST /admin/backfill/{id}/pause``,
``…/resume`` and ``…/cancel`` change it. Errors are RFC 7807 problems.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from node.backfill.manager import BackfillManager
from node.backfill.request import BackfillRequest
from node.errors import NodeNotRunning
from node.web._deps import ServicesDep
from node.web.auth import require_admin

__all__ = ["router"]

router = APIRouter(prefix="/admin/backfill", tags=["admin"],
                   dependencies=[Depends(require_admin)])


class BackfillIn(BaseModel):
    """The body of ``POST /admin/backfill``: the flags of ``precedent backfill start``."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="a configured destination AE title (the PACS)")
    since: str = Field(description="first study date, YYYY-MM-DD")
    until: str | None = Field(None, description="last study date (default: today)")
    modality: str | list[str] | None = Field(None, description="e.g. CT,MR (default: every "
                                             "image modality)")
    via: str = Field("dimse", description="dimse or dicomweb")
    window: str | None = Field(None, description="HH:MM-HH:MM, local time; may wrap midnight")
    rate: float | None = Field(None, description="studies per hour at most")
    concurrency: int | None = Field(None, description="associations to the PACS at most")


def _manager(services: ServicesDep) -> BackfillManager:
    if services.backfill is None:
        raise NodeNotRunning("backfills run inside the node (precedent serve), which has "
                             "not started them")
    return services.backfill


@router.post("", status_code=201)
def start_backfill(body: BackfillIn, services: ServicesDep) -> dict[str, Any]:
    manager = _manager(services)
    request = BackfillRequest.build(
        source=body.source, since=body.since, until=body.until, modality=body.modality,
        via=body.via, window=body.window, rate=body.rate,
        concurrency=body.concurrency or services.settings.backfill.concurrency,
        today=manager.today())
    return manager.start_backfill(request)


@router.get("")
def list_backfills(services: ServicesDep) -> dict[str, Any]:
    return {"backfills": _manager(services).statuses()}


@router.get("/{job_id}")
def backfill_status(job_id: int, services: ServicesDep) -> dict[str, Any]:
    return _manager(services).status(job_id)


@router.post("/{job_id}/pause")
def pause_backfill(job_id: int, services: ServicesDep) -> dict[str, Any]:
    return _manager(services).pause(job_id)


@router.post("/{job_id}/resume")
def resume_backfill(job_id: int, services: ServicesDep) -> dict[str, Any]:
    return _manager(services).resume(job_id)


@router.post("/{job_id}/cancel")
def cancel_backfill(job_id: int, services: ServicesDep) -> dict[str, Any]:
    return _manager(services).cancel(job_id)
