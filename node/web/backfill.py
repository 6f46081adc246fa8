"""Backfills over REST, behind the admin token like every ``/admin`` route
(:mod:`node.web.admin`): the same as ``precedent backfill``, which uses them through
:mod:`node.admin_client`.

``POST /admin/backfill`` starts one (201, its status); ``GET /admin/backfill`` lists them
with their status; ``GET /admin/backfill/{id}`` is one's status (counts, rate, ETA,
failures with reasons, and why it waits); ``POST /admin/backfill/{id}/pause``,
``…/resume`` and ``…/cancel`` change it. Errors are RFC 7807 problems.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from node.backfill.request import BackfillRequest
from node.errors import NotFound
from node.runtime import Services
from node.web._deps import ServicesDep
from node.web.auth import require_admin

if TYPE_CHECKING:  # the manager (with the PACS clients) is the running node's
    from node.backfill.manager import BackfillManager

__all__ = ["router"]

router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin)])


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


def _manager(services: Services) -> BackfillManager:
    if services.backfill is None:
        raise NotFound("this server runs no backfills (it is not a running node)")
    return services.backfill


@router.post("/admin/backfill", status_code=201)
def start_backfill(body: BackfillIn, services: ServicesDep) -> dict[str, Any]:
    manager = _manager(services)
    request = BackfillRequest.build(
        source=body.source, since=body.since, until=body.until, modality=body.modality,
        via=body.via, window=body.window, rate=body.rate,
        concurrency=body.concurrency or services.settings.backfill.concurrency,
        today=manager.today())
    return manager.start_backfill(request)


@router.get("/admin/backfill")
def list_backfills(services: ServicesDep) -> dict[str, Any]:
    return {"backfills": _manager(services).statuses()}


@router.get("/admin/backfill/{job_id}")
def backfill_status(job_id: int, services: ServicesDep) -> dict[str, Any]:
    return _manager(services).status(job_id)


@router.post("/admin/backfill/{job_id}/pause")
def pause_backfill(job_id: int, services: ServicesDep) -> dict[str, Any]:
    return _manager(services).pause(job_id)


@router.post("/admin/backfill/{job_id}/resume")
def resume_backfill(job_id: int, services: ServicesDep) -> dict[str, Any]:
    return _manager(services).resume(job_id)


@router.post("/admin/backfill/{job_id}/cancel")
def cancel_backfill(job_id: int, services: ServicesDep) -> dict[str, Any]:
    return _manager(services).cancel(job_id)
