"""``POST /studies/{study}/similar/kos``: the similar cases as a Key Object Selection
document, stored on the node and, when asked, sent to a destination (read scope);
``GET /destinations``: where it can be sent.

Failures are the domain's exceptions (:class:`~node.errors.KosError` and its subclasses,
:class:`~node.errors.QueryError`, :class:`~node.errors.ModelNotReady`), answered by
:mod:`node.web.problems`: a send the destination refused is a 502 whose body still names
the stored KOS."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from node.errors import BadRequest
from node.key_objects import write_similar_cases_kos
from node.retrieval import MAX_LIMIT
from node.storage.aes import list_destinations
from node.storage.query import QueryLevelValues
from node.web._deps import ServicesDep, check_uid
from node.web._similar_params import similar_query

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
    #: the lowest cosine a case may have (-1 to 1); absent: no floor
    min_score: float | None = Field(None, alias="minScore")


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "body"
        message = str(error.get("msg"))
        if error.get("type") == "extra_forbidden":
            message = ("is not a field: use limit, destination, send, Modality, "
                       "BodyPartExamined, StudyDate, excludePatient, positive, negative, "
                       "minScore")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


async def _body(request: Request) -> KosRequest:
    raw = await request.body()
    if not raw.strip():
        return KosRequest.model_validate({})
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        return KosRequest.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_describe(exc)) from exc


@router.get("/destinations")
def destinations(services: ServicesDep) -> JSONResponse:
    """The AE titles a KOS can be sent to (titles only, so the read scope may list them);
    ``[kos] destination`` is flagged ``"default": true``."""
    default = services.settings.kos.destination
    titles = [d.ae_title for d in list_destinations(services.connections.get())]
    return JSONResponse([{"ae_title": t, "default": t == default} for t in titles])


@router.post("/studies/{study}/similar/kos", status_code=201)
async def similar_cases_kos(request: Request, study: str,
                            services: ServicesDep) -> JSONResponse:
    """Write the study's similar cases as a KOS; 201 with
    ``{"SOPInstanceUID", "SeriesInstanceUID", "sent_to"}``."""
    check_uid(study, "StudyInstanceUID")
    body = await _body(request)
    query = similar_query(level=QueryLevelValues.STUDY,
                          limit=body.limit or services.settings.kos.limit,
                          modality=body.modality, body_part=body.body_part,
                          study_date=body.study_date, exclude_patient=body.exclude_patient,
                          positive=body.positive, negative=body.negative,
                          min_score=body.min_score)
    destination = body.destination
    if destination is None and body.send is not False:
        destination = services.settings.kos.destination
    if body.send is False:
        destination = None

    def run() -> dict[str, Any]:
        return write_similar_cases_kos(services, study, query,
                                       destination=destination).as_json()

    result = await run_in_threadpool(run)
    return JSONResponse(result, status_code=201)
