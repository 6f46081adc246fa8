"""The node's exceptions: one hierarchy, turned into protocol answers at the boundary.

::

    PrecedentError
    ├── SettingsError            a setting is wrong; start-up stops with its message
    │   └── StartupError         a setting's value cannot be used here (port in use, folder
    │                            not writable); start-up stops, nothing is left listening
    ├── DataFolderBusy           another process owns the data folder (the lock's pid)
    ├── NodeAdminError           the running node could not do an administrative request
    ├── AdminError               an AE-title administration request cannot be done
    │   ├── AlreadyExists        409 on REST, an error line on the command line
    │   └── NotFound             404
    ├── IngestError              an instance cannot be stored; carries its DIMSE status
    │   ├── InvalidInstance      undecodable, missing or inconsistent UIDs (0xC000 range)
    │   ├── SopClassMismatch     the data set does not match its SOP class (0xA900)
    │   ├── DuplicateRejected    same SOP Instance UID, policy "reject" (0xA700 range)
    │   └── OutOfResources       the disk is full or below the reserve (0xA700)
    ├── QueryError               a query or similar-case request cannot be answered
    │   ├── InvalidQuery         a key, parameter or upload cannot be used (400; C-FIND 0xA900)
    │   ├── UnknownObject        the study, series or instance is not on the node (404)
    │   └── NotIndexed           on the node but without a vector yet (409)
    ├── ModelNotReady            the embedding model is not loaded (503, with the reason)
    ├── Busy                     the node does as much of this work at once as it may (503)
    ├── ReportError              a report cannot be read (malformed SR, PDF, CSV)
    ├── KosError                 a Key Object Selection cannot be written or sent
    │   ├── UnknownDestination   404
    │   ├── NothingToSelect      409
    │   └── SendFailed           stored on the node, refused by the destination (502)
    ├── BackfillError            a backfill cannot be started or changed as asked
    │   ├── InvalidBackfill      a date, window, rate or source cannot be used (400)
    │   ├── UnknownBackfill      no backfill has that id (404)
    │   └── BackfillConflict     not in a state that allows it (409)
    ├── CollectionError          a collection folder, labels or captions file cannot be read
    └── RequestError             a REST request cannot be used as sent
        ├── BadRequest           a parameter, header or body cannot be used (400)
        ├── Unauthorized         no bearer token, or not a valid one (401, with a challenge)
        ├── Forbidden            a valid token without the right scope (403)
        ├── NotAcceptable        the node cannot answer in the media type asked for (406)
        ├── PayloadTooLarge      the body is over the limit (413)
        └── UnsupportedMediaType the body's media type is not one the route takes (415)

Every class carries ``http_status``, and ``title`` and ``headers`` where its answer needs
them (ModelNotReady, Busy: ``Retry-After``; Unauthorized: ``WWW-Authenticate``);
:mod:`node.web.problems` turns any of them into an RFC 7807 answer, the DIMSE handlers
turn :class:`IngestError` and :class:`InvalidQuery` into statuses. Anything else is a bug
and is logged as such by the protocol adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "AdminError",
    "AlreadyExists",
    "BackfillConflict",
    "BackfillError",
    "BadRequest",
    "Busy",
    "CollectionError",
    "DataFolderBusy",
    "DuplicateRejected",
    "Forbidden",
    "IngestError",
    "InvalidBackfill",
    "InvalidInstance",
    "InvalidQuery",
    "KosError",
    "ModelNotReady",
    "NodeAdminError",
    "NotAcceptable",
    "NotFound",
    "NotIndexed",
    "NothingToSelect",
    "OutOfResources",
    "PayloadTooLarge",
    "PrecedentError",
    "QueryError",
    "ReportError",
    "RequestError",
    "SendFailed",
    "SettingsError",
    "SopClassMismatch",
    "StartupError",
    "Unauthorized",
    "UnknownBackfill",
    "UnknownDestination",
    "UnknownObject",
    "UnsupportedMediaType",
]

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class PrecedentError(Exception):
    """Base of every error the node raises on purpose."""

    http_status: int = 400
    #: the problem's title on REST; ``None``: the HTTP status's reason phrase
    title: str | None = None
    #: HTTP headers the REST answer carries
    headers: Mapping[str, str] = _NO_HEADERS


class SettingsError(PrecedentError):
    """A setting is missing or wrong; the message names it and the allowed values."""


class StartupError(SettingsError):
    """A setting's value cannot be used on this machine now: the port is taken, the data
    folder cannot be written. The message names the setting and its value."""


class DataFolderBusy(PrecedentError):
    """Another process holds the data folder's lock; ``owner`` is its card (or None)."""

    http_status = 409

    def __init__(self, message: str, *, owner: object = None) -> None:
        super().__init__(message)
        self.owner = owner


class NodeAdminError(PrecedentError):
    """An administrative request through the running node's admin API failed; the
    message carries the node's answer."""


class AdminError(PrecedentError):
    """An administration request cannot be carried out."""


class AlreadyExists(AdminError):
    """The AE title (or other key) is configured already."""

    http_status = 409


class NotFound(AdminError):
    """The named AE title (or other key) is not configured."""

    http_status = 404


class IngestError(PrecedentError):
    """An instance was not stored. ``status`` is the DIMSE status to answer with."""

    status: int = 0xC000
    http_status: int = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidInstance(IngestError):
    """The data set cannot be understood: undecodable, or UIDs missing or invalid."""

    status = 0xC210


class SopClassMismatch(IngestError):
    """The data set's SOP Class UID differs from the one it was sent as."""

    status = 0xA900
    http_status = 409


class DuplicateRejected(IngestError):
    """The SOP Instance UID is stored already and the policy says reject."""

    status = 0xA770
    http_status = 409


class OutOfResources(IngestError):
    """The disk is full, free space is below the configured reserve, or the catalog's
    server cannot be reached (all transient: the sender tries again)."""

    status = 0xA700
    http_status = 507


class QueryError(PrecedentError):
    """A query (C-FIND, QIDO-RS) or a similar-case request cannot be answered."""


class InvalidQuery(QueryError):
    """A query key, parameter or uploaded image cannot be used; the message says what to
    change. ``attribute`` names the key; ``comment`` is the message in at most 64
    characters (a DIMSE Error Comment is LO)."""

    def __init__(self, message: str, *, attribute: str | None = None,
                 short: str | None = None) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.comment = (short or message)[:64]


class UnknownObject(QueryError):
    """The study, series or instance is not on the node (or the part of it asked for: a
    frame, a bulk data element, a report)."""

    http_status = 404


class NotIndexed(QueryError):
    """The object is on the node but has no vector (not yet indexed, or no picture)."""

    http_status = 409


class ModelNotReady(PrecedentError):
    """The embedding model is not loaded (yet, or at all); the message says why."""

    http_status = 503
    title = "Model not loaded"
    headers = MappingProxyType({"Retry-After": "30"})


class Busy(PrecedentError):
    """The node is doing as much of this work at once as it may (decoding uploads); the
    answer says when to try again (``Retry-After``)."""

    http_status = 503
    title = "Busy"
    headers = MappingProxyType({"Retry-After": "5"})

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.headers = MappingProxyType({"Retry-After": str(retry_after_s)})


class ReportError(PrecedentError):
    """A report cannot be read (a malformed SR, an unreadable PDF, a bad CSV file)."""


class KosError(PrecedentError):
    """A Key Object Selection document cannot be written or sent."""


class UnknownDestination(KosError):
    http_status = 404


class NothingToSelect(KosError):
    http_status = 409


class SendFailed(KosError):
    """The KOS was stored on the node but the destination did not take it."""

    http_status = 502

    def __init__(self, message: str, *, sop_instance_uid: str, series_instance_uid: str):
        super().__init__(message)
        self.sop_instance_uid = sop_instance_uid
        self.series_instance_uid = series_instance_uid


class BackfillError(PrecedentError):
    """A backfill cannot be started, paused, resumed or cancelled as asked."""


class InvalidBackfill(BackfillError):
    """A date, time window, rate, concurrency, modality or source cannot be used."""


class UnknownBackfill(BackfillError):
    """No backfill has the id asked for."""

    http_status = 404


class BackfillConflict(BackfillError):
    """The backfill is not in a state that allows what was asked (resume a cancelled one)."""

    http_status = 409


class CollectionError(PrecedentError):
    """An image collection cannot be imported: the folder, its labels CSV or its captions
    file is missing or malformed (a broken image is not an error: it is reported and
    skipped)."""


class RequestError(PrecedentError):
    """A REST request cannot be used as sent; the message says what to send instead.
    ``headers`` adds to (or replaces) the class's headers for this answer."""

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        if headers is not None:
            self.headers = MappingProxyType({**type(self).headers, **headers})


class BadRequest(RequestError):
    """A parameter, header or body cannot be used (its name is in the message)."""


class Unauthorized(RequestError):
    """No bearer token, or one this node does not know; answered with a challenge
    (RFC 6750)."""

    http_status = 401
    headers = MappingProxyType({"WWW-Authenticate": 'Bearer realm="precedent"'})


class Forbidden(RequestError):
    """A valid token whose scope does not cover the route (a read token on an admin route)."""

    http_status = 403


class NotAcceptable(RequestError):
    """The node cannot answer in any media type the request accepts."""

    http_status = 406


class PayloadTooLarge(RequestError):
    """The request body is over the node's limit."""

    http_status = 413


class UnsupportedMediaType(RequestError):
    """The body's media type is not one the route takes."""

    http_status = 415
