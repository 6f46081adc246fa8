"""RFC 7807 problem details: every REST failure becomes one, here and nowhere else.

Routes raise :class:`~node.errors.PrecedentError` subclasses (one exception tree, drawn
in :mod:`node.errors`); each carries its HTTP status, and its title and headers where
the answer needs them. Four handlers turn failures into problems: the node's own
errors, Starlette's HTTP errors (unknown route, wrong method), FastAPI's parameter
validation, and a catalog that cannot be reached (503 with Retry-After). Members beyond
RFC 7807's: ``attribute`` (the query key an :class:`~node.errors.InvalidQuery` names)
and a failed send's ``SOPInstanceUID`` and ``SeriesInstanceUID`` (the KOS is stored on
the node all the same).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from database import OperationalError
from node.errors import InvalidQuery, PrecedentError, SendFailed
from node.web._deps import PROBLEM_JSON

__all__ = ["install_problem_handlers", "problem_response"]

_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict",
    413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    507: "Insufficient Storage",
}


def problem_response(status: int, detail: str, *, title: str | None = None,
                     headers: Mapping[str, str] | None = None,
                     **members: object) -> JSONResponse:
    """The problem answer: ``detail`` says what to change; ``members`` extend it."""
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"),
            "status": status, "detail": detail, **members}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON,
                        headers=dict(headers) if headers else None)


def _members(exc: PrecedentError) -> dict[str, object]:
    """What a problem says beyond its detail, for the errors that carry more."""
    if isinstance(exc, SendFailed):
        return {"SOPInstanceUID": exc.sop_instance_uid,
                "SeriesInstanceUID": exc.series_instance_uid}
    if isinstance(exc, InvalidQuery) and exc.attribute is not None:
        return {"attribute": exc.attribute}
    return {}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(PrecedentError)
    async def _precedent(_: Request, exc: PrecedentError) -> JSONResponse:
        return problem_response(exc.http_status, str(exc), title=exc.title,
                                headers=exc.headers, **_members(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such route: see /openapi.json for the routes this node offers"
        return problem_response(exc.status_code, detail, headers=exc.headers)

    async def _catalog(_: Request, exc: Exception) -> JSONResponse:
        # the catalog's server down or its connection lost: the next request opens a new
        # one (database.ThreadConnections), so the client is told to come back
        return problem_response(503, "the catalog is not reachable now "
                                f"({type(exc).__name__}); try again shortly",
                                headers={"Retry-After": "5"})

    for cls in OperationalError:
        app.add_exception_handler(cls, _catalog)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where}: {error.get('msg')}")
        return problem_response(400, "; ".join(parts) or "the request is not valid")
