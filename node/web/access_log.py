"""The HTTP access log: one line per request at INFO on the ``node.web.access`` logger —
method, path, status, duration and client — and never a query string (QIDO-RS query
strings carry patient names; uvicorn's own access log stays off for that reason).

Path segments are kept when they are the routes' own words (``studies``, ``metadata``),
UIDs, frame lists or tags; any other segment is logged as ``*``, so a name sent where a
UID belongs (``/studies/Doe^John``) does not reach the log either::

    GET /dicom-web/studies/1.2.840.1.1/similar 200 12.4 ms 10.0.0.7:52144

A plain ASGI middleware (no request body is touched, streaming answers are timed to
their last byte).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "loggable_path", "route_words"]

log = logging.getLogger("node.web.access")

#: UIDs, frame lists (``1,3``), numbers, and 8-digit hexadecimal tags (``7FE00010``)
_KEPT = re.compile(r"^(?:[0-9.,]{1,128}|[0-9A-Fa-f]{8})$")


def loggable_path(path: str, words: frozenset[str]) -> str:
    """``path`` with every segment that is neither one of ``words`` nor a UID, frame
    list or tag replaced by ``*``."""
    return "/".join(s if (not s or s in words or _KEPT.match(s)) else "*"
                    for s in path.split("/"))


def route_words(app: Any) -> frozenset[str]:
    """The literal segments of the application's routes (``{…}`` parameters left out):
    its own routes', and those of its OpenAPI document (included routers)."""
    paths = [str(getattr(route, "path", None) or "") for route in getattr(app, "routes", ())]
    openapi = getattr(app, "openapi", None)
    if callable(openapi):
        paths += list(openapi().get("paths", {}))
    return frozenset(segment for path in paths for segment in path.split("/")
                     if segment and "{" not in segment)


class AccessLog:
    """Logs each HTTP request once it is answered (or has failed: status 500)."""

    def __init__(self, app: ASGIApp, *, words: frozenset[str]) -> None:
        self.app = app
        self.words = words  #: the routes' own words (:func:`route_words`)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, logged = 500, False  # 500 unless the application answers

        async def send_and_log(message: Message) -> None:
            nonlocal status, logged
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                self._log(scope, status, start)  # before the client has the whole answer
                logged = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_log)
        finally:
            if not logged:
                self._log(scope, status, start)

    def _log(self, scope: Scope, status: int, start: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        log.info("%s %s %d %.1f ms %s", scope.get("method", "-"),
                 loggable_path(scope.get("path", ""), self.words), status,
                 (time.perf_counter() - start) * 1000,
                 f"{client[0]}:{client[1]}" if client else "-")
