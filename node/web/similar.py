"""The similar-case extension (routes under ``/dicom-web``; read scope).

- ``GET /studies/{study}/similar``, ``…/series/{series}/similar``,
  ``…/series/{series}/instances/{sop}/similar``: cases similar to a stored object;
- ``POST /similar?level=…``: by an uploaded DICOM file, PNG or JPEG (its decoded size
  bounded before decoding: :mod:`node.retrieval.upload`);
- ``GET /similar?text=…&level=…&hybrid=…``: by text (optionally fused with BM25).

The answer is a QIDO-RS-shaped ``application/dicom+json`` array for the level; each
element carries the PRECEDENT private block (docs/api.md) and the response the
``Precedent-Ranking`` header and, with enough support, ``Precedent-Consensus``. A text
query's cosine floor defaults to ``[retrieval] text_min_score``. The logic lives in
:mod:`node.retrieval`; these routes parse parameters, call it, and answer with
:mod:`node.web._similar_answer`. Failures are the domain's exceptions, answered by
:mod:`node.web.problems`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from node.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from node.retrieval import (
    UPLOAD_MEDIA_TYPES,
    SimilarAnswer,
    decode_upload,
    find_stored_object,
    similar_to_image,
    similar_to_stored,
    similar_to_text,
)
from node.runtime import Services
from node.storage.query import QueryLevelValues
from node.web._deps import BaseUrlDep, ServicesDep, UploadLimitsDep, check_uid
from node.web._dicom_json import DicomJSONResponse
from node.web._similar_answer import answer_headers, answer_json
from node.web._similar_params import SimilarParams, SimilarParamsDep

__all__ = ["MAX_UPLOAD_BYTES", "router"]

router = APIRouter(tags=["similar cases"])

MAX_UPLOAD_BYTES = 256 * 1024 * 1024


def _respond(services: Services, answer: SimilarAnswer, base: str) -> Response:
    body = answer_json(services.connections.get(), answer, base)
    return DicomJSONResponse(body, headers=answer_headers(answer, services.settings.retrieval))


def _stored(services: Services, base: str, *, study: str, series: str | None,
            sop: str | None, level: QueryLevelValues, params: SimilarParams) -> Response:
    study = check_uid(study, "StudyInstanceUID")
    series = check_uid(series, "SeriesInstanceUID") if series is not None else None
    sop = check_uid(sop, "SOPInstanceUID") if sop is not None else None
    query = params.query(level)
    conn = services.connections.get()
    obj = find_stored_object(conn, study=study, series=series, sop=sop)
    _, index_set = services.model.require()
    answer = similar_to_stored(conn, index_set, obj, query)
    return _respond(services, answer, base)


@router.get("/studies/{study}/similar")
def similar_to_study(study: str, params: SimilarParamsDep, services: ServicesDep,
                     base: BaseUrlDep) -> Response:
    """Studies similar to a stored study (its own vector; no model time)."""
    return _stored(services, base, study=study, series=None, sop=None,
                   level=QueryLevelValues.STUDY, params=params)


@router.get("/studies/{study}/series/{series}/similar")
def similar_to_series(study: str, series: str, params: SimilarParamsDep,
                      services: ServicesDep, base: BaseUrlDep) -> Response:
    """Series similar to a stored series."""
    return _stored(services, base, study=study, series=series, sop=None,
                   level=QueryLevelValues.SERIES, params=params)


@router.get("/studies/{study}/series/{series}/instances/{sop}/similar")
def similar_to_instance(study: str, series: str, sop: str, params: SimilarParamsDep,
                        services: ServicesDep, base: BaseUrlDep) -> Response:
    """Instances similar to a stored instance."""
    return _stored(services, base, study=study, series=series, sop=sop,
                   level=QueryLevelValues.IMAGE, params=params)


def _parse_bool(value: str | None, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} {value!r} is not a boolean: use true or false")


@router.get("/similar")
def similar_to_text_route(
    params: SimilarParamsDep, services: ServicesDep, base: BaseUrlDep,
    text: str | None = None, level: str = "study", hybrid: str | None = None,
) -> Response:
    """Cases matching a text (the model's text tower; ``hybrid=true`` adds BM25 over the
    reports, fused by reciprocal rank fusion), at or above ``minScore`` (default
    ``[retrieval] text_min_score``)."""
    if text is None or not text.strip():
        raise BadRequest("text is missing: GET /similar needs text=… (or POST an image "
                         "to /similar)")
    use_hybrid = _parse_bool(hybrid, "hybrid", False)
    query = params.query(level, exclude_patient=False,  # a text has no patient
                         default_min_score=services.settings.retrieval.text_min_score)
    embedder, index_set = services.model.require()
    answer = similar_to_text(services.connections.get(), embedder, index_set, text,
                             query, hybrid=use_hybrid)
    return _respond(services, answer, base)


async def _body(request: Request) -> bytes:
    """The request body, refused (413) as soon as it is over :data:`MAX_UPLOAD_BYTES`
    whether or not a Content-Length announced it."""
    too_large = f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MiB"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(too_large)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(too_large)
    return bytes(data)


@router.post("/similar")
async def similar_to_upload(request: Request, params: SimilarParamsDep,
                            services: ServicesDep, base: BaseUrlDep, limits: UploadLimitsDep,
                            level: str = "study") -> Response:
    """Cases similar to an uploaded image: a DICOM file (``application/dicom``), PNG or
    JPEG; a DICOM upload's own patient is left out unless ``excludePatient=false``. The
    upload's decoded size is bounded before it is decoded (413 over
    ``[http] max_upload_pixels``, 503 while other uploads hold the decoding budget)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    media_type = {"image/jpg": "image/jpeg"}.get(media_type, media_type)
    if media_type not in UPLOAD_MEDIA_TYPES:
        raise UnsupportedMediaType(f"media type {media_type or '(none)'!r} is not accepted: "
                                   "send the image as one of " + ", ".join(UPLOAD_MEDIA_TYPES))
    query = params.query(level)
    data = await _body(request)

    def run() -> SimilarAnswer:
        upload = decode_upload(data, media_type, limits)
        embedder, index_set = services.model.require()
        return similar_to_image(services.connections.get(), embedder, index_set,
                                upload, query)

    answer = await run_in_threadpool(run)
    return await run_in_threadpool(_respond, services, answer, base)
