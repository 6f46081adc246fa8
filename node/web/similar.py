"""The similar-case extension (routes under ``/dicom-web``; read scope).

- ``GET /studies/{study}/similar``, ``…/series/{series}/similar``,
  ``…/series/{series}/instances/{sop}/similar``: cases similar to a stored object;
- ``POST /similar?level=…``: by an uploaded DICOM file, PNG or JPEG;
- ``GET /similar?text=…&level=…&hybrid=…``: by text (optionally fused with BM25).

The answer is a QIDO-RS-shaped ``application/dicom+json`` array for the level; each
element carries the PRECEDENT private block (docs/api.md) and the response the
``Precedent-Consensus`` header. The logic lives in :mod:`node.retrieval`; these routes
parse parameters, call it, and turn its answer into DICOM JSON.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from indexer import LevelValues
from node.errors import QueryError
from node.retrieval import (
    EXCERPT_CHARS,
    UPLOAD_MEDIA_TYPES,
    Case,
    SimilarAnswer,
    SimilarQuery,
    decode_upload,
    excerpt,
    find_stored_object,
    similar_to_image,
    similar_to_stored,
    similar_to_text,
)
from node.runtime import Services
from node.storage.query import QueryLevelValues
from node.storage.uids import is_valid_uid
from node.web.problems import Problem
from node.web.qido import dicomweb_base, qido_answers, required_keys

__all__ = [
    "CONSENSUS_HEADER",
    "DICOM_JSON",
    "PRIVATE_CREATOR",
    "answer_json",
    "base_url",
    "retrieval_problems",
    "router",
    "similar_query",
]

router = APIRouter(tags=["similar cases"])

DICOM_JSON = "application/dicom+json"
CONSENSUS_HEADER = "Precedent-Consensus"
PRIVATE_CREATOR = "PRECEDENT"
PRIVATE_GROUP = 0x0011
MAX_UPLOAD_BYTES = 256 * 1024 * 1024


# ------------------------------------------------------------------ plumbing


@contextmanager
def retrieval_problems() -> Iterator[None]:
    """Turn :class:`QueryError` into its problem answer (400, 404 or 409)."""
    try:
        yield
    except QueryError as exc:
        raise Problem(exc.http_status, str(exc)) from exc


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def base_url(request: Request) -> str:
    """The DICOMweb base for RetrieveURL and report links (as QIDO-RS builds them)."""
    return dicomweb_base(request)


def _uid(value: str, name: str) -> str:
    if not is_valid_uid(value):
        raise Problem(400, f"{name} {value[:80]!r} is not a valid UID (digits and dots, "
                      "at most 64 characters)")
    return value


def _uids(values: Sequence[str], name: str) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        out += [_uid(v.strip(), name) for v in value.split(",") if v.strip()]
    return tuple(out)


def similar_query(*, level: str | LevelValues, limit: int, modality: str | None,
                  body_part: str | None, study_date: str | None,
                  exclude_patient: bool | None, positive: Sequence[str],
                  negative: Sequence[str]) -> SimilarQuery:
    """The query the parameters describe, or a 400 problem naming the wrong one."""
    with retrieval_problems():
        return SimilarQuery(
            level=level,  # type: ignore[arg-type]  # a str is converted and checked there
            limit=limit, modality=modality, body_part=body_part,
            study_date=study_date, exclude_patient=exclude_patient,
            positive=_uids(positive, "positive"), negative=_uids(negative, "negative"),
        )


# the query parameters every similar-case route shares
Limit = Annotated[int, Query(description="results, 1 to 100")]
Modality = Annotated[str | None, Query(alias="Modality")]
BodyPart = Annotated[str | None, Query(alias="BodyPartExamined")]
StudyDate = Annotated[str | None, Query(alias="StudyDate",
                                        description="YYYYMMDD or YYYYMMDD-YYYYMMDD")]
ExcludePatient = Annotated[bool | None, Query(alias="excludePatient")]
Feedback = Annotated[list[str], Query()]


@dataclass(frozen=True, slots=True)
class SimilarParams:
    """The query parameters every similar-case route shares."""

    limit: int
    modality: str | None
    body_part: str | None
    study_date: str | None
    exclude_patient: bool | None
    positive: list[str]
    negative: list[str]

    def query(self, level: str | LevelValues, *,
              exclude_patient: bool | None = None) -> SimilarQuery:
        """The query at ``level``; ``exclude_patient`` overrides the parameter."""
        return similar_query(
            level=level, limit=self.limit, modality=self.modality, body_part=self.body_part,
            study_date=self.study_date,
            exclude_patient=self.exclude_patient if exclude_patient is None
            else exclude_patient,
            positive=self.positive, negative=self.negative)


def _similar_params(
    limit: Limit = 10, modality: Modality = None, body_part: BodyPart = None,
    study_date: StudyDate = None, exclude_patient: ExcludePatient = None,
    positive: Feedback = [],  # noqa: B006
    negative: Feedback = [],  # noqa: B006
) -> SimilarParams:
    return SimilarParams(limit, modality, body_part, study_date, exclude_patient,
                         positive, negative)


Params = Annotated[SimilarParams, Depends(_similar_params)]


# ------------------------------------------------------------------ DICOM JSON

_QIDO_LEVEL = {LevelValues.STUDY: QueryLevelValues.STUDY,
               LevelValues.SERIES: QueryLevelValues.SERIES,
               LevelValues.INSTANCE: QueryLevelValues.IMAGE}
#: the levels above whose attributes a result carries too (as the flat QIDO-RS routes)
_ALSO = {QueryLevelValues.STUDY: (),
         QueryLevelValues.SERIES: (QueryLevelValues.STUDY,),
         QueryLevelValues.IMAGE: (QueryLevelValues.SERIES, QueryLevelValues.STUDY)}
#: what the panel shows beside the required attributes
_SHOWN = ["StudyDescription", "BodyPartExamined", "SeriesDate"]
_UID_TAG = {QueryLevelValues.STUDY: "0020000D", QueryLevelValues.SERIES: "0020000E",
            QueryLevelValues.IMAGE: "00080018"}
_BODY_PART = "00180015"


def _case_uid(case: Case, level: LevelValues) -> str | None:
    if level is LevelValues.STUDY:
        return case.study_instance_uid
    if level is LevelValues.SERIES:
        return case.series_instance_uid
    return case.sop_instance_uid


def _private_block(case: Case, base: str) -> dict[str, dict[str, Any]]:
    """The PRECEDENT private block of one result (docs/internals.md)."""
    block: dict[str, dict[str, Any]] = {
        "00110010": {"vr": "LO", "Value": [PRIVATE_CREATOR]},
        "00111001": {"vr": "FD", "Value": [round(case.score, 6)]},
        "00111002": {"vr": "IS", "Value": [case.rank]},
    }
    if case.best_instance_uid:
        block["00111003"] = {"vr": "UI", "Value": [case.best_instance_uid]}
    if case.report is not None:
        block["00111004"] = {"vr": "UT", "Value": [excerpt(case.report.text, EXCERPT_CHARS)]}
        block["00111005"] = {"vr": "UR",
                             "Value": [f"{base}/studies/{case.study_instance_uid}/report"]}
        if case.report.labels:
            block["00111006"] = {"vr": "LO",
                                 "Value": [label[:64] for label in case.report.labels]}
    if case.best_series_uid:
        block["00111007"] = {"vr": "UI", "Value": [case.best_series_uid]}
    return block


def answer_json(conn: sqlite3.Connection, answer: SimilarAnswer, base: str
                ) -> list[dict[str, Any]]:
    """The QIDO-RS-shaped DICOM JSON array of an answer: each case as QIDO-RS answers
    for it at its level (the same builder), then the PRECEDENT private block."""
    level = _QIDO_LEVEL[answer.level]
    uids = [uid for case in answer.cases if (uid := _case_uid(case, answer.level))]
    if not uids:
        return []
    keyword = {"0020000D": "StudyInstanceUID", "0020000E": "SeriesInstanceUID",
               "00080018": "SOPInstanceUID"}[_UID_TAG[level]]
    found = qido_answers(conn, level, {keyword: "\\".join(uids)},
                         required_keys(level, _ALSO[level]) + _SHOWN, base)
    by_uid = {item[_UID_TAG[level]]["Value"][0]: item for item in found}
    body_parts: dict[str, Any] = {}
    if level is QueryLevelValues.STUDY:  # the body part of each case's best series
        best = [c.best_series_uid for c in answer.cases if c.best_series_uid]
        if best:
            for item in qido_answers(conn, QueryLevelValues.SERIES,
                                     {"SeriesInstanceUID": "\\".join(best)},
                                     ["StudyInstanceUID", "SeriesInstanceUID",
                                      "BodyPartExamined"], base):
                if _BODY_PART in item:
                    body_parts[item["0020000E"]["Value"][0]] = item[_BODY_PART]
    items: list[dict[str, Any]] = []
    for case in answer.cases:
        found_item = by_uid.get(_case_uid(case, answer.level) or "")
        if found_item is None:
            continue  # deleted between the search and now
        if case.best_series_uid in body_parts:
            found_item[_BODY_PART] = body_parts[case.best_series_uid]
        found_item.update(_private_block(case, base))
        items.append(found_item)
    return items


def _respond(services: Services, answer: SimilarAnswer, base: str) -> Response:
    body = answer_json(services.connections.get(), answer, base)
    headers = {}
    if answer.consensus is not None:
        headers[CONSENSUS_HEADER] = json.dumps(answer.consensus.as_json())
    return Response(json.dumps(body), media_type=DICOM_JSON, headers=headers)


# ------------------------------------------------------------------ routes


def _stored(request: Request, *, study: str, series: str | None, sop: str | None,
            level: LevelValues, params: SimilarParams) -> Response:
    services = _services(request)
    study = _uid(study, "StudyInstanceUID")
    series = _uid(series, "SeriesInstanceUID") if series is not None else None
    sop = _uid(sop, "SOPInstanceUID") if sop is not None else None
    query = params.query(level)
    conn = services.connections.get()
    with retrieval_problems():
        obj = find_stored_object(conn, study=study, series=series, sop=sop)
        _, index_set = services.model.require()
        answer = similar_to_stored(conn, index_set, obj, query)
    return _respond(services, answer, base_url(request))


@router.get("/studies/{study}/similar")
def similar_to_study(request: Request, study: str, params: Params) -> Response:
    """Studies similar to a stored study (its own vector; no model time)."""
    return _stored(request, study=study, series=None, sop=None, level=LevelValues.STUDY,
                   params=params)


@router.get("/studies/{study}/series/{series}/similar")
def similar_to_series(request: Request, study: str, series: str, params: Params) -> Response:
    """Series similar to a stored series."""
    return _stored(request, study=study, series=series, sop=None, level=LevelValues.SERIES,
                   params=params)


@router.get("/studies/{study}/series/{series}/instances/{sop}/similar")
def similar_to_instance(request: Request, study: str, series: str, sop: str,
                        params: Params) -> Response:
    """Instances similar to a stored instance."""
    return _stored(request, study=study, series=series, sop=sop, level=LevelValues.INSTANCE,
                   params=params)


def _parse_bool(value: str | None, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise Problem(400, f"{name} {value!r} is not a boolean: use true or false")


@router.get("/similar")
def similar_to_text_route(
    request: Request, params: Params, text: str | None = None, level: str = "study",
    hybrid: str | None = None,
) -> Response:
    """Cases matching a text (the model's text tower; ``hybrid=true`` adds BM25 over the
    reports, fused by reciprocal rank fusion)."""
    services = _services(request)
    if text is None or not text.strip():
        raise Problem(400, "text is missing: GET /similar needs text=… (or POST an image "
                      "to /similar)")
    use_hybrid = _parse_bool(hybrid, "hybrid", False)
    query = params.query(level, exclude_patient=False)  # a text has no patient
    with retrieval_problems():
        embedder, index_set = services.model.require()
        answer = similar_to_text(services.connections.get(), embedder, index_set, text,
                                 query, hybrid=use_hybrid)
    return _respond(services, answer, base_url(request))


@router.post("/similar")
async def similar_to_upload(request: Request, params: Params,
                            level: str = "study") -> Response:
    """Cases similar to an uploaded image: a DICOM file (``application/dicom``), PNG or
    JPEG; a DICOM upload's own patient is left out unless ``excludePatient=false``."""
    services = _services(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    media_type = {"image/jpg": "image/jpeg"}.get(media_type, media_type)
    if media_type not in UPLOAD_MEDIA_TYPES:
        raise Problem(415, f"media type {media_type or '(none)'!r} is not accepted: send the "
                      "image as one of " + ", ".join(UPLOAD_MEDIA_TYPES))
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise Problem(413, f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
    query = params.query(level)
    data = await request.body()

    def run() -> SimilarAnswer:
        with retrieval_problems():
            upload = decode_upload(data, media_type)
            embedder, index_set = services.model.require()
            return similar_to_image(services.connections.get(), embedder, index_set,
                                    upload, query)

    answer = await run_in_threadpool(run)
    return await run_in_threadpool(_respond, services, answer, base_url(request))
