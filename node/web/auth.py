"""Bearer tokens: a read scope and an admin scope, each only when configured.

``require_read`` and ``require_admin`` are FastAPI dependencies; a refusal is an
:class:`~node.errors.Unauthorized` (401, with the ``WWW-Authenticate`` challenge) or a
:class:`~node.errors.Forbidden` (403).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from node.errors import Forbidden, Unauthorized
from node.web._deps import ServicesDep

__all__ = ["require_admin", "require_read"]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(given, expected)


def require_read(request: Request, services: ServicesDep) -> None:
    """Routes that read: open unless a read token is configured."""
    http = services.settings.http
    if http.read_token is None:
        return
    token = _bearer(request)
    if token is None:
        raise Unauthorized("this node requires a bearer token: send "
                           "'Authorization: Bearer <token>'")
    if not (_matches(token, http.read_token) or _matches(token, http.admin_token)):
        raise Unauthorized("the bearer token is not valid for this node")


def require_admin(request: Request, services: ServicesDep) -> None:
    """Routes that change configuration or delete: need the admin token when one is set."""
    http = services.settings.http
    if http.admin_token is None:
        return
    token = _bearer(request)
    if token is None:
        raise Unauthorized("this route requires the admin bearer token")
    if not _matches(token, http.admin_token):
        if _matches(token, http.read_token):
            raise Forbidden("a read token cannot change the configuration or delete; "
                            "use the admin token")
        raise Unauthorized("the bearer token is not valid for this node")
