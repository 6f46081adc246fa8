"""STOW-RS (PS3.18 §10.5): store instances sent as ``multipart/related;
type="application/dicom"``, one DICOM Part 10 file per part.

Each part goes through ``services.ingest.store(…, source="STOW-RS")``: the same durable
path as C-STORE (file written and fsynced, catalogued and queued in one transaction)
before it is reported stored. The body is parsed as it arrives (python-multipart) and
each part is stored as soon as it is complete; the request is bounded
(``[http] max_request_bytes``, 413 beyond).

The answer is a DICOM JSON data set with ``ReferencedSOPSequence`` (stored, with their
``RetrieveURL``) and ``FailedSOPSequence`` (with ``FailureReason``: the DIMSE status the
same failure gets over C-STORE — 0xA700 out of resources, 0xA770 duplicate rejected,
0xA900 data set does not match (also: its Study Instance UID differs from the one in
the request path), 0xC000-range cannot understand). HTTP status: 200 all stored, 202
some failed, 409 all failed (PS3.18 table 10.5.3-1; a full disk included: its parts carry
0xA700, "Refused out of Resources" in PS3.18 table I.2-2). A wrong Content-Type is a 415
problem that says what to send; a request path whose Study Instance UID is not a UID is a
400 problem, before any part is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydicom.dataset import Dataset
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from node.errors import (
    BadRequest,
    IngestError,
    PayloadTooLarge,
    SopClassMismatch,
    UnsupportedMediaType,
)
from node.runtime import Services
from node.storage import parse_part10
from node.web._deps import DICOM, DICOM_JSON, BaseUrlDep, ServicesDep, check_uid

__all__ = ["STUDY_MISMATCH", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["STOW-RS"])

#: FailureReason for an instance whose Study Instance UID differs from the request
#: path's: 0xA900, Data Set does not match SOP Class (PS3.4 B.2.3), as over C-STORE
STUDY_MISMATCH = SopClassMismatch.status
#: FailureReason for a part that is not application/dicom: 0xC000, cannot understand
_NOT_DICOM = IngestError.status

_WHAT_TO_SEND = ('send Content-Type: multipart/related; type="application/dicom"; '
                 "boundary=…, one DICOM Part 10 file per part")


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True, slots=True)
class _Outcome:
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    failure_reason: int | None = None
    message: str = ""


def _uid(ds: Dataset | None, keyword: str) -> str | None:
    if ds is None:
        return None
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 — a malformed value raises on access
        return None
    text = str(value).strip("\x00 ") if value else ""
    return text or None


def _store_part(services: Services, part: _Part, study: str | None) -> _Outcome:
    part_type = part.headers.get("content-type", DICOM)
    if parse_options_header(part_type)[0].decode("latin-1").lower() != DICOM:
        return _Outcome(None, None, failure_reason=_NOT_DICOM,
                        message=f"part is {part_type[:60]}, not {DICOM}")
    data = bytes(part.data)
    ds: Dataset | None = None
    try:
        ds = parse_part10(data)
        if study is not None and _uid(ds, "StudyInstanceUID") != study:
            return _Outcome(_uid(ds, "SOPClassUID"), _uid(ds, "SOPInstanceUID"),
                            failure_reason=STUDY_MISMATCH,
                            message="Study Instance UID differs from the request's")
        stored = services.ingest.store(data, source="STOW-RS", dataset=ds)
    except IngestError as exc:
        return _Outcome(_uid(ds, "SOPClassUID"), _uid(ds, "SOPInstanceUID"),
                        failure_reason=exc.status, message=str(exc))
    return _Outcome(stored.sop_class_uid, stored.sop_instance_uid,
                    stored.study_instance_uid, stored.series_instance_uid)


def _response(base: str, outcomes: list[_Outcome], study: str | None) -> JSONResponse:
    answer = Dataset()
    stored = [o for o in outcomes if o.failure_reason is None]
    failed = [o for o in outcomes if o.failure_reason is not None]
    studies = {o.study_instance_uid for o in stored}
    if study is not None or len(studies) == 1:
        answer.RetrieveURL = f"{base}/studies/{study or next(iter(studies))}"
    if stored:
        answer.ReferencedSOPSequence = []
        for o in stored:
            item = Dataset()
            item.ReferencedSOPClassUID = o.sop_class_uid
            item.ReferencedSOPInstanceUID = o.sop_instance_uid
            item.RetrieveURL = (f"{base}/studies/{o.study_instance_uid}/series/"
                                f"{o.series_instance_uid}/instances/{o.sop_instance_uid}")
            answer.ReferencedSOPSequence.append(item)
    if failed:
        answer.FailedSOPSequence = []
        for o in failed:
            item = Dataset()
            if o.sop_class_uid:
                item.ReferencedSOPClassUID = o.sop_class_uid
            if o.sop_instance_uid:
                item.ReferencedSOPInstanceUID = o.sop_instance_uid
            item.FailureReason = o.failure_reason
            answer.FailedSOPSequence.append(item)
    status = 200 if not failed else (409 if not stored else 202)
    log.info("stow-rs stored=%d failed=%d reasons=%s", len(stored), len(failed),
             sorted({f"0x{o.failure_reason:04X}" for o in failed if o.failure_reason}))
    headers = None
    if failed:  # the reasons in words, for people reading the exchange (no patient data)
        words = "; ".join(sorted({o.message[:120] for o in failed}))[:500]
        headers = {"Warning": f'299 precedent "{words.replace(chr(34), chr(39))}"'}
    return JSONResponse(answer.to_json_dict(), status_code=status, media_type=DICOM_JSON,
                        headers=headers)


def _boundary(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    media, params = parse_options_header(content_type)
    part_type = params.get(b"type", DICOM.encode()).decode("latin-1").lower()
    if media != b"multipart/related" or part_type != DICOM:
        raise UnsupportedMediaType(f"STOW-RS on this node takes DICOM files: {_WHAT_TO_SEND} "
                                   f"(this request has '{content_type[:100]}')")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest(f"the Content-Type has no boundary parameter: {_WHAT_TO_SEND}")
    return boundary


async def _store(request: Request, services: Services, base: str,
                 study: str | None) -> JSONResponse:
    boundary = _boundary(request)
    limit = services.settings.http.max_request_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; this node accepts at most "
                              f"{limit} bytes per STOW-RS request: send fewer "
                              "instances per request")
    complete: list[_Part] = []
    current: list[_Part] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}

    def on_part_begin() -> None:
        current[:] = [_Part()]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current[0].data += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        name = header["field"].decode("latin-1").strip().lower()
        current[0].headers[name] = header["value"].decode("latin-1").strip()
        header["field"], header["value"] = bytearray(), bytearray()

    def on_part_end() -> None:
        complete.append(current.pop())

    callbacks: Any = {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_end": on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)
    outcomes: list[_Outcome] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"the body is over {limit} bytes, the most this node "
                                      "accepts per STOW-RS request: send fewer instances "
                                      "per request")
            parser.write(chunk)
            while complete:
                outcomes.append(await run_in_threadpool(_store_part, services,
                                                        complete.pop(0), study))
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"the multipart body cannot be parsed ({exc}): {_WHAT_TO_SEND}; "
                         f"{len(outcomes)} part(s) before the error were processed") from exc
    while complete:
        outcomes.append(await run_in_threadpool(_store_part, services, complete.pop(0), study))
    if not outcomes:
        raise BadRequest(f"the body holds no parts: {_WHAT_TO_SEND}")
    return _response(base, outcomes, study)


@router.post("/studies", summary="Store instances (STOW-RS)")
async def store_instances(request: Request, services: ServicesDep,
                          base: BaseUrlDep) -> JSONResponse:
    return await _store(request, services, base, None)


@router.post("/studies/{study}", summary="Store instances of one study (STOW-RS)")
async def store_study_instances(study: str, request: Request, services: ServicesDep,
                                base: BaseUrlDep) -> JSONResponse:
    study = check_uid(study, "StudyInstanceUID")  # before the body: nothing is stored
    return await _store(request, services, base, study)
