"""Query/Retrieve SCP handlers: C-FIND, C-MOVE and C-GET, Patient Root and Study Root.

Thin adapters in pynetdicom's generator style (``apps/qrscp/handlers.py``): they turn
the identifier into a :class:`node.storage.query.Query`, run it on the catalog and
yield the answers. Permissions are screened before (:mod:`node.dimse.scp`); failures
become DIMSE statuses here (:class:`~node.dimse.status_codes.DimseStatusValues`), and a
handler never raises into pynetdicom:

========================  ==========================================================
DOES_NOT_MATCH_SOP_CLASS  0xA900: bad level, bad key value; the Error Comment says
                          which key and what to send
MOVE_DESTINATION_UNKNOWN  0xA801, C-MOVE: not a configured destination
CATALOG_UNAVAILABLE       0xC001: the catalog could not be read (logged)
STORED_FILE_UNREADABLE    0xC002: a stored instance cannot be read back (logged)
UNABLE_TO_PROCESS         0xC000: anything else (logged without values)
CANCEL                    0xFE00: a C-CANCEL arrived
========================  ==========================================================

The identifier is logged at debug only (it carries patient names).

Bind them with ``handlers=[(evt.EVT_C_FIND, handle_find, [services]), …]``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import build_context
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from database import Connection, DatabaseError
from node.dimse._identifier import filters_from_identifier
from node.dimse.status_codes import DimseStatusValues as S
from node.errors import InvalidQuery
from node.runtime import Services
from node.storage.aes import get_destination
from node.storage.query import (
    UNIQUE_KEYS,
    InstanceFile,
    Query,
    QueryLevelValues,
    find,
    find_files,
    is_supported,
)

__all__ = ["handle_find", "handle_get", "handle_move"]

log = logging.getLogger(__name__)

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)
_MAX_CONTEXTS = 128
_MAX_SUBOPERATIONS = 65535


def _status(code: int, comment: str) -> Dataset:
    """A status data set with an Error Comment (LO in the command set's default
    repertoire: ASCII, at most 64 characters)."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment.encode("ascii", "replace").decode("ascii")[:64]
    return status


def _model(event: Event) -> str:
    """``PATIENT`` or ``STUDY`` root, from the request's Affected SOP Class UID."""
    keyword = UID(str(event.request.AffectedSOPClassUID)).keyword or ""
    return "PATIENT" if keyword.startswith("PatientRoot") else "STUDY"


def _query(event: Event, *, for_retrieve: bool) -> tuple[Query, Dataset]:
    """The identifier as a query; raises :class:`InvalidQuery` with what is wrong."""
    identifier: Dataset = event.identifier
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if not level:
        raise InvalidQuery("QueryRetrieveLevel (0008,0052) is missing",
                           attribute="QueryRetrieveLevel", short="QueryRetrieveLevel is missing")
    if level == "PATIENT" and _model(event) == "STUDY":
        raise InvalidQuery("PATIENT level needs Patient Root, not Study Root",
                           attribute="QueryRetrieveLevel")
    filters, keys = filters_from_identifier(identifier)
    if for_retrieve:
        # only the unique keys select what is retrieved (PS3.4 C.4.2.2.1)
        filters = {k: v for k, v in filters.items() if k in UNIQUE_KEYS.values() and v}
        if not filters:
            raise InvalidQuery("the identifier holds no unique key value to retrieve",
                               attribute="QueryRetrieveLevel",
                               short="no unique key value to retrieve")
    query = Query(level=level, filters=filters, return_keys=keys, ignore_unsupported=True)
    return query, identifier


def _conn(services: Services) -> Connection:
    return services.connections.get()


def _response(match: Dataset, identifier: Dataset, query: Query, ae_title: str,
              model: str) -> Dataset:
    """The C-FIND answer: every requested key (empty when not catalogued)."""
    response = Dataset()
    for element in identifier:
        if element.keyword == "SpecificCharacterSet":
            continue
        if element.keyword in match:
            response[element.tag] = match[element.tag]
        elif element.keyword == "RetrieveAETitle":
            response.RetrieveAETitle = ae_title
        elif element.keyword == "InstanceAvailability":
            response.InstanceAvailability = "ONLINE"
        else:  # not catalogued (or a sequence): returned empty
            response.add_new(element.tag, element.VR, None)
    # the unique keys of the level and of the levels above (hierarchical answer)
    top = 0 if model == "PATIENT" else 1
    for level in list(QueryLevelValues)[top: query.level.depth + 1]:
        key = UNIQUE_KEYS[level]
        if key in match and key not in response:
            response[key] = match[key]
    response.QueryRetrieveLevel = query.level.value
    if any(isinstance(e.value, str) and not e.value.isascii() for e in response):
        response.SpecificCharacterSet = "ISO_IR 192"
    return response


def _unexpected(service: str, exc: Exception) -> Dataset:
    """A failure the handler did not foresee: logged without values (its details at
    debug level), answered with a status and a generic comment."""
    status = S.CATALOG_UNAVAILABLE if isinstance(exc, DatabaseError) else S.UNABLE_TO_PROCESS
    log.error("%s failed: %s (details at debug level)", service, type(exc).__name__)
    log.debug("%s failed", service, exc_info=True)
    return _status(status, f"unable to process: {type(exc).__name__}")


def _refused(service: str, exc: InvalidQuery) -> Dataset:
    log.info("%s refused: %s cannot be used (details at debug level)", service,
             exc.attribute or "the identifier")
    log.debug("%s refused: %s", service, exc)
    return _status(S.DOES_NOT_MATCH_SOP_CLASS, exc.comment)


def _log_identifier(service: str, event: Event) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s identifier:\n%s", service, event.identifier)


def handle_find(event: Event, services: Services) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """EVT_C_FIND: yield ``(PENDING, identifier)`` per match, then success."""
    try:
        _log_identifier("c-find", event)
        model = _model(event)
        query, identifier = _query(event, for_retrieve=False)
        extra = [UNIQUE_KEYS[lv] for lv in list(QueryLevelValues)[:query.level.depth + 1]
                 if is_supported(UNIQUE_KEYS[lv], query.level)]
        query = Query(level=query.level, filters=query.filters,
                      return_keys=[*query.return_keys, *extra])
        matches = find(_conn(services), query)
        log.info("c-find level=%s matches=%d calling=%s", query.level.value, len(matches),
                 event.assoc.requestor.ae_title)
        ae_title = event.assoc.ae.ae_title
        answers = []
        for match in matches:
            answers.append(_response(match, identifier, query, ae_title, model))
    except InvalidQuery as exc:
        yield _refused("c-find", exc), None
        return
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing raises into pynetdicom
        yield _unexpected("c-find", exc), None
        return
    for answer in answers:
        if event.is_cancelled:
            yield S.CANCEL, None
            return
        yield S.PENDING, answer
    yield S.SUCCESS, None


def _contexts(files: list[InstanceFile]) -> list[PresentationContext]:
    """Presentation contexts to send ``files`` in their stored transfer syntaxes."""
    contexts: list[PresentationContext] = []
    seen: set[tuple[str, str]] = set()
    for f in files:
        syntax = f.transfer_syntax_uid or ExplicitVRLittleEndian
        pair = (f.sop_class_uid, syntax)
        if pair in seen:
            continue
        seen.add(pair)
        syntaxes: list[str | UID] = list(_UNCOMPRESSED) if syntax in _UNCOMPRESSED else [syntax]
        if syntax in _UNCOMPRESSED and (f.sop_class_uid, "uncompressed") in seen:
            continue
        if syntax in _UNCOMPRESSED:
            seen.add((f.sop_class_uid, "uncompressed"))
        contexts.append(build_context(f.sop_class_uid, syntaxes))
        if len(contexts) == _MAX_CONTEXTS:
            log.warning("more than %d presentation contexts needed; some instances will fail",
                        _MAX_CONTEXTS)
            break
    return contexts


def _datasets(event: Event, services: Services,
              files: list[InstanceFile]) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    data_dir = services.ingest.data_dir
    for f in files:
        if event.is_cancelled:
            yield S.CANCEL, None
            return
        try:
            ds = pydicom.dcmread(data_dir / f.path)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing raises into pynetdicom
            log.error("stored file unreadable instance=%s: %s", f.sop_instance_uid,
                      type(exc).__name__)
            yield _status(S.STORED_FILE_UNREADABLE, "a stored instance cannot be read"), None
            return
        yield S.PENDING, ds


def _retrieve_files(event: Event, services: Services) -> list[InstanceFile]:
    query, _ = _query(event, for_retrieve=True)
    files = find_files(_conn(services), query)
    if len(files) > _MAX_SUBOPERATIONS:
        raise InvalidQuery(f"{len(files)} instances match: retrieve at most "
                           f"{_MAX_SUBOPERATIONS} at a time (ask at a lower level)",
                           short=f"over {_MAX_SUBOPERATIONS} instances match: ask lower")
    return files


def _move_destination(event: Event) -> str:
    value = event.move_destination
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return text.strip()


def handle_move(event: Event, services: Services) -> Iterator[Any]:
    """EVT_C_MOVE: yield the destination, the number of instances, then each one."""
    try:
        _log_identifier("c-move", event)
        move_aet = _move_destination(event)
        destination = get_destination(_conn(services), move_aet)
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing raises into pynetdicom
        _unexpected("c-move", exc)
        destination = None
        move_aet = "?"
    if destination is None:
        log.warning("c-move to unknown destination %r from %s", move_aet,
                    event.assoc.requestor.ae_title)
        yield None, None  # pynetdicom answers MOVE_DESTINATION_UNKNOWN
        return
    failure: Dataset | None = None
    files: list[InstanceFile] = []
    try:
        files = _retrieve_files(event, services)
    except InvalidQuery as exc:
        failure = _refused("c-move", exc)
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing raises into pynetdicom
        failure = _unexpected("c-move", exc)
    log.info("c-move to=%s instances=%d calling=%s", move_aet, len(files),
             event.assoc.requestor.ae_title)
    yield destination.host, destination.port, {
        "contexts": _contexts(files) or [build_context(Verification)],
        "ae_title": destination.ae_title,
    }
    if failure is not None:
        yield 1
        yield failure, None
        return
    yield len(files)
    yield from _datasets(event, services, files)


def handle_get(event: Event, services: Services) -> Iterator[Any]:
    """EVT_C_GET: yield the number of instances, then each one (sent back over the
    caller's association, in the storage contexts it offered with the SCP role)."""
    try:
        _log_identifier("c-get", event)
        files = _retrieve_files(event, services)
    except InvalidQuery as exc:
        yield 1
        yield _refused("c-get", exc), None
        return
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing raises into pynetdicom
        yield 1
        yield _unexpected("c-get", exc), None
        return
    log.info("c-get instances=%d calling=%s", len(files), event.assoc.requestor.ae_title)
    yield len(files)
    yield from _datasets(event, services, files)
