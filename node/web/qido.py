"""QIDO-RS (PS3.18 §10.6): search for studies, series and instances.

Matching is the C-FIND engine's (:mod:`node.storage.query`): the same rules, the same
SQL. Query parameters are DICOM keywords or tags (``PatientID`` or ``00100020``) with
matching values, plus ``includefield`` (repeatable, comma-separated, or ``all``),
``limit``, ``offset`` and ``fuzzymatching`` (accepted, not supported: a ``Warning``
header says so). UID values may be lists separated by ``,`` or ``\\``.

Each answer carries the attributes PS3.18 table 10.6.3-3/-4/-5 requires for its level
(those the catalog holds) and ``RetrieveURL``, built from ``[http] public_url`` or the
request's own base URL. Unknown parameters and bad values are 400 problems naming them:
a date that is no day (``StudyDate=20241301``), a time that is no time of day, a value
holding a control character (``PatientName=%00``, which would otherwise read as empty and
match every study).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from node.errors import BadRequest, InvalidQuery, NotAcceptable
from node.runtime import Services
from node.storage.query import (
    QueryLevelValues,
    attribute_keyword,
    has_control_character,
    is_supported,
    supported_keys,
)
from node.web._deps import DICOM_JSON, BaseUrlDep, ServicesDep
from node.web._dicom_json import DicomJSONResponse
from node.web._qido_answer import qido_answers, required_keys

__all__ = ["parse_search", "router"]

_MAX_LIMIT = 100_000


def _int_parameter(name: str, text: str, *, maximum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= maximum:
        raise BadRequest(f"query parameter '{name}' must be an integer from 0 to {maximum}, "
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
                    raise BadRequest(f"includefield '{field[:64]}' is not a DICOM keyword "
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
                raise BadRequest(f"query parameter '{name[:64]}' is not known: use a DICOM "
                                 "keyword or tag (e.g. PatientID or 00100020), includefield, "
                                 "limit, offset or fuzzymatching")
            if has_control_character(value):  # %00 would otherwise read as an empty value
                raise InvalidQuery(f"query parameter '{name[:64]}' holds a control character "
                                   "(such as %00): send printable text, or leave the "
                                   "parameter out to match any value", attribute=keyword)
            if not is_supported(keyword, level):
                warnings.append(f'299 precedent "{keyword} is not supported for matching '
                                f'at this level and was ignored"')
                continue
            if keyword in filters:
                raise BadRequest(f"query parameter '{name}' is given more than once: "
                                 "for several values send one list (a\\b, or a,b for UIDs)")
            filters[keyword] = value
    return filters, include, include_all, limit, offset, warnings


def _search(
    request: Request,
    services: Services,
    base: str,
    level: QueryLevelValues,
    *,
    path_filters: dict[str, str] | None = None,
    also: tuple[QueryLevelValues, ...] = (),
) -> Response:
    """Run one QIDO-RS search; ``also`` names the levels above whose required attributes
    each answer carries too (as Orthanc does: a series answer says whose study it is)."""
    filters, include, include_all, limit, offset, warnings = parse_search(
        request.query_params.multi_items(), level)
    filters.update(path_filters or {})
    keys = required_keys(level, also)
    keys += supported_keys(level) if include_all else include
    body = qido_answers(services.connections.get(), level, filters, keys, base,
                        limit=limit, offset=offset)
    headers = {"Warning": ", ".join(warnings)} if warnings else None
    return DicomJSONResponse(body, headers=headers)


async def _check_accept(request: Request) -> None:  # async: no thread-pool hop
    accept = request.headers.get("accept", "")
    if accept and not any(t in accept for t in ("json", "*/*", "application/*")):
        raise NotAcceptable(f"QIDO-RS answers only {DICOM_JSON} (or application/json); "
                            f"'{accept[:80]}' was asked")


router = APIRouter(tags=["QIDO-RS"], dependencies=[Depends(_check_accept)])
_STUDY, _SERIES, _IMAGE = (QueryLevelValues.STUDY, QueryLevelValues.SERIES,
                           QueryLevelValues.IMAGE)


@router.get("/studies", summary="Search for studies")
def search_studies(request: Request, services: ServicesDep, base: BaseUrlDep) -> Response:
    return _search(request, services, base, _STUDY)


@router.get("/studies/{study}/series", summary="Search for series of a study")
def search_study_series(study: str, request: Request, services: ServicesDep,
                        base: BaseUrlDep) -> Response:
    return _search(request, services, base, _SERIES,
                   path_filters={"StudyInstanceUID": study}, also=(_STUDY,))


@router.get("/series", summary="Search for series")
def search_series(request: Request, services: ServicesDep, base: BaseUrlDep) -> Response:
    return _search(request, services, base, _SERIES, also=(_STUDY,))


@router.get("/studies/{study}/series/{series}/instances",
            summary="Search for instances of a series")
def search_series_instances(study: str, series: str, request: Request, services: ServicesDep,
                            base: BaseUrlDep) -> Response:
    return _search(request, services, base, _IMAGE,
                   path_filters={"StudyInstanceUID": study, "SeriesInstanceUID": series},
                   also=(_STUDY, _SERIES))


@router.get("/studies/{study}/instances", summary="Search for instances of a study")
def search_study_instances(study: str, request: Request, services: ServicesDep,
                           base: BaseUrlDep) -> Response:
    return _search(request, services, base, _IMAGE, path_filters={"StudyInstanceUID": study},
                   also=(_STUDY, _SERIES))


@router.get("/instances", summary="Search for instances")
def search_instances(request: Request, services: ServicesDep, base: BaseUrlDep) -> Response:
    return _search(request, services, base, _IMAGE, also=(_STUDY, _SERIES))
