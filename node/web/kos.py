"""``POST /studies/{study}/similar/kos``: the similar cases as a Key Object Selection
document, stored on the node and, when asked, sent to a destination (read scope)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer import LevelValues
from node.errors import KosError, SendFailed
from node.key_objects import write_similar_cases_kos
from node.retrieval import MAX_LIMIT
from node.runtime import Services
from node.storage.aes import list_destinations
from node.storage.uids import is_valid_uid
from node.web.problems import Problem
from node.web.similar import retrieval_problems, similar_query

__all__ = ["KosRequest", "router"]

router = APIRouter(tags=["similar cases"])


class KosRequest(BaseModel):
    """The JSON body (every field optional)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    #: a configured destination AE title; absent: ``[kos] destination`` when set
    destination: str | None = None
    #: false: store only, even when ``[kos] destination`` is set
    send: bool | None = None
    modality: str | None = Field(None, alias="Modality")
    body_part: str | None = Field(None, alias="BodyPartExamined")
    study_date: str | None = Field(None, alias="StudyDate")
    exclude_patient: bool | None = Field(None, alias="excludePatient")
    positive: list[str] = []
    negative: list[str] = []


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "body"
        message = str(error.get("msg"))
        if error.get("type") == "extra_forbidden":
            message = ("is not a field: use limit, destination, send, Modality, "
                       "BodyPartExamined, StudyDate, excludePatient, positive, negative")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


async def _body(request: Request) -> KosRequest:
    raw = await request.body()
    if not raw.strip():
        return KosRequest.model_validate({})
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise Problem(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Problem(400, "the body must be a JSON object")
    try:
        return KosRequest.model_validate(data)
    except ValidationError as exc:
        raise Problem(400, _describe(exc)) from exc


@router.get("/destinations")
def destinations(request: Request) -> JSONResponse:
    """The AE titles a KOS can be sent to (titles only, so the read scope may list them);
    ``[kos] destination`` is flagged ``"default": true``."""
    services: Services = request.app.state.services
    default = services.settings.kos.destination
    titles = [d.ae_title for d in list_destinations(services.connections.get())]
    return JSONResponse([{"ae_title": t, "default": t == default} for t in titles])


@router.post("/studies/{study}/similar/kos", status_code=201)
async def similar_cases_kos(request: Request, study: str) -> JSONResponse:
    """Write the study's similar cases as a KOS; 201 with
    ``{"SOPInstanceUID", "SeriesInstanceUID", "sent_to"}``."""
    from fastapi.concurrency import run_in_threadpool

    if not is_valid_uid(study):
        raise Problem(400, f"StudyInstanceUID {study[:80]!r} is not a valid UID")
    services: Services = request.app.state.services
    body = await _body(request)
    query = similar_query(level=LevelValues.STUDY, limit=body.limit or services.settings.kos.limit,
                   modality=body.modality, body_part=body.body_part,
                   study_date=body.study_date, exclude_patient=body.exclude_patient,
                   positive=body.positive, negative=body.negative)
    destination = body.destination
    if destination is None and body.send is not False:
        destination = services.settings.kos.destination
    if body.send is False:
        destination = None

    def run() -> dict[str, Any]:
        with retrieval_problems():
            try:
                return write_similar_cases_kos(services, study, query,
                                               destination=destination).as_json()
            except SendFailed as exc:
                raise Problem(exc.http_status, str(exc), title="Bad Gateway",
                              SOPInstanceUID=exc.sop_instance_uid,
                              SeriesInstanceUID=exc.series_instance_uid) from exc
            except KosError as exc:
                raise Problem(exc.http_status, str(exc)) from exc

    result = await run_in_threadpool(run)
    return JSONResponse(result, status_code=201)
