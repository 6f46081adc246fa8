"""QIDO-RS (PS3.18 §10.6): search for studies, series and instances.

Matching is the C-FIND engine's (:mod:`node.storage.query`): the same rules, the same
SQL. Query parameters are DICOM keywords or tags (``PatientID`` or ``00100020``) with
matching values, plus ``includefield`` (repeatable, comma-separated, or ``all``),
``limit``, ``offset`` and ``fuzzymatching`` (accepted, not supported: a ``Warning``
header says so). UID values may be lists separated by ``,`` or ``\\``.

Each answer carries the attributes PS3.18 table 10.6.3-3/-4/-5 requires for its level
(those the catalog holds) and ``RetrieveURL``, built from ``[http] public_url`` or the
request's own base URL. Unknown parameters and bad values are 400 problems naming them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from node.errors import InvalidQuery
from node.runtime import Services
from node.storage.query import (
    Query,
    QueryLevelValues,
    attribute_keyword,
    find_json,
    is_supported,
    supported_keys,
)
from node.web.problems import Problem

__all__ = ["DICOM_JSON", "dicomweb_base", "router", "search"]

router = APIRouter(tags=["QIDO-RS"])

DICOM_JSON = "application/dicom+json"

#: PS3.18 table 10.6.3-3 (study), -4 (series), -5 (instance): what the catalog holds
REQUIRED_KEYS: dict[QueryLevelValues, tuple[str, ...]] = {
    QueryLevelValues.STUDY: (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
        "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate",
        "PatientSex", "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    QueryLevelValues.SERIES: (
        "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
        "NumberOfSeriesRelatedInstances", "StudyInstanceUID",
    ),
    QueryLevelValues.IMAGE: (
        "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
        "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID",
    ),
}

_CONTROL = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
_MAX_LIMIT = 100_000


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def dicomweb_base(request: Request) -> str:
    """The DICOMweb root clients should use: ``public_url`` + ``/dicom-web``, or the
    request's own base URL."""
    from node.web.app import DICOMWEB_PREFIX  # app imports this module

    public = services_of(request).settings.http.public_url
    root = (public or str(request.base_url)).rstrip("/")
    return root if root.endswith(DICOMWEB_PREFIX) else root + DICOMWEB_PREFIX


def _int_parameter(name: str, text: str, *, maximum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= maximum:
        raise Problem(400, f"query parameter '{name}' must be an integer from 0 to {maximum}, "
                           f"not {text[:40]!r}")
    return value


def parse_search(items: Iterable[tuple[str, str]], level: QueryLevelValues,
                 ) -> tuple[dict[str, str], list[str], bool, int | None, int, list[str]]:
    """Query parameters to (filters, include keys, include all, limit, offset, warnings)."""
    filters: dict[str, str] = {}
    include: list[str] = []
    include_all = False
    limit: int | None = None
    offset = 0
    warnings: list[str] = []
    for name, value in items:
        if name == "includefield":
            for field in (f.strip() for f in value.split(",")):
                if not field:
                    continue
                if field == "all":
                    include_all = True
                    continue
                keyword = attribute_keyword(field)
                if keyword is None:
                    raise Problem(400, f"includefield '{field[:64]}' is not a DICOM keyword "
                                       "or tag: use e.g. PatientAge or 00101010, or 'all'")
                include.append(keyword)
        elif name == "limit":
            limit = _int_parameter("limit", value, maximum=_MAX_LIMIT)
        elif name == "offset":
            offset = _int_parameter("offset", value, maximum=2**62)
        elif name == "fuzzymatching":
            if value.lower() == "true":
                warnings.append('299 precedent "fuzzymatching is not supported: '
                                'exact and wildcard matching were used"')
        else:
            keyword = attribute_keyword(name)
            if keyword is None:
                raise Problem(400, f"query parameter '{name[:64]}' is not known: use a DICOM "
                                   "keyword or tag (e.g. PatientID or 00100020), includefield, "
                                   "limit, offset or fuzzymatching")
            if not is_supported(keyword, level):
                warnings.append(f'299 precedent "{keyword} is not supported for matching '
                                f'at this level and was ignored"')
                continue
            if keyword in filters:
                raise Problem(400, f"query parameter '{name}' is given more than once: "
                                   "for several values send one list (a\\b, or a,b for UIDs)")
            filters[keyword] = value
    return filters, include, include_all, limit, offset, warnings


def _uid_lists(filters: dict[str, str]) -> dict[str, str]:
    """QIDO also separates UID lists with commas; the engine takes backslashes."""
    return {k: (v.replace(",", "\\") if k.endswith("UID") else v) for k, v in filters.items()}


_AVAILABILITY, _RETRIEVE_URL, _CHARSET = "00080056", "00081190", "00080005"
_UID_TAGS = (("0020000D", "studies"), ("0020000E", "series"), ("00080018", "instances"))


def _retrieve_url(base: str, answer: dict[str, dict[str, Any]], level: QueryLevelValues) -> str:
    """``…/studies/{s}``, ``…/studies/{s}/series/{se}`` or ``…/instances/{i}``."""
    url = base
    for tag, name in _UID_TAGS[:level.depth]:  # STUDY: 1, SERIES: 2, IMAGE: 3
        url += f"/{name}/{answer[tag]['Value'][0]}"
    return url


def qido_answers(conn: sqlite3.Connection, level: QueryLevelValues, filters: dict[str, str],
                 keys: list[str], base: str, *, limit: int | None = None,
                 offset: int = 0) -> list[dict[str, dict[str, Any]]]:
    """The QIDO-RS answers (DICOM JSON) at ``level``: the catalog's matches with
    ``InstanceAvailability``, ``RetrieveURL`` and, when needed, the character set.
    Also what the similar-case extension answers with, so both read the same."""
    query = Query(level=level, filters=_uid_lists(filters), return_keys=keys,
                  limit=limit, offset=offset)
    body = find_json(conn, query)
    for answer in body:
        answer[_AVAILABILITY] = {"vr": "CS", "Value": ["ONLINE"]}
        answer[_RETRIEVE_URL] = {"vr": "UR", "Value": [_retrieve_url(base, answer, level)]}
        if not json.dumps(answer, ensure_ascii=False).isascii():
            answer[_CHARSET] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    return body


def required_keys(level: QueryLevelValues,
                  also: tuple[QueryLevelValues, ...] = ()) -> list[str]:
    """The attributes every answer at ``level`` carries (and those of ``also``)."""
    keys: list[str] = list(REQUIRED_KEYS[level])
    for above in also:
        keys += REQUIRED_KEYS[above]
    return keys


def search(
    request: Request,
    level: QueryLevelValues,
    *,
    path_filters: dict[str, str] | None = None,
    also: tuple[QueryLevelValues, ...] = (),
) -> JSONResponse:
    """Run one QIDO-RS search; ``also`` names the levels above whose required attributes
    each answer carries too (as Orthanc does: a series answer says whose study it is)."""
    filters, include, include_all, limit, offset, warnings = parse_search(
        request.query_params.multi_items(), level)
    filters.update(path_filters or {})
    keys = required_keys(level, also)
    keys += supported_keys(level) if include_all else include
    try:
        body = qido_answers(services_of(request).connections.get(), level, filters, keys,
                            dicomweb_base(request), limit=limit, offset=offset)
    except InvalidQuery as exc:
        raise Problem(400, str(exc), attribute=exc.attribute) from exc
    headers = {"Warning": ", ".join(warnings)} if warnings else None
    return JSONResponse(body, media_type=DICOM_JSON, headers=headers)


def check_accept(request: Request) -> None:
    accept = request.headers.get("accept", "")
    if accept and not any(t in accept for t in ("json", "*/*", "application/*")):
        raise Problem(406, f"QIDO-RS answers only {DICOM_JSON} (or application/json); "
                           f"'{accept[:80]}' was asked")


@router.get("/studies", summary="Search for studies")
def search_studies(request: Request) -> JSONResponse:
    check_accept(request)
    return search(request, QueryLevelValues.STUDY)


@router.get("/studies/{study}/series", summary="Search for series of a study")
def search_study_series(study: str, request: Request) -> JSONResponse:
    check_accept(request)
    return search(request, QueryLevelValues.SERIES, path_filters={"StudyInstanceUID": study},
                  also=(QueryLevelValues.STUDY,))


@router.get("/series", summary="Search for series")
def search_series(request: Request) -> JSONResponse:
    check_accept(request)
    return search(request, QueryLevelValues.SERIES, also=(QueryLevelValues.STUDY,))


@router.get("/studies/{study}/series/{series}/instances",
            summary="Search for instances of a series")
def search_series_instances(study: str, series: str, request: Request) -> JSONResponse:
    check_accept(request)
    return search(request, QueryLevelValues.IMAGE,
                  path_filters={"StudyInstanceUID": study, "SeriesInstanceUID": series},
                  also=(QueryLevelValues.STUDY, QueryLevelValues.SERIES))


@router.get("/studies/{study}/instances", summary="Search for instances of a study")
def search_study_instances(study: str, request: Request) -> JSONResponse:
    check_accept(request)
    return search(request, QueryLevelValues.IMAGE, path_filters={"StudyInstanceUID": study},
                  also=(QueryLevelValues.STUDY, QueryLevelValues.SERIES))


@router.get("/instances", summary="Search for instances")
def search_instances(request: Request) -> JSONResponse:
    check_accept(request)
    return search(request, QueryLevelValues.IMAGE,
                  also=(QueryLevelValues.STUDY, QueryLevelValues.SERIES))
