"""Bearer tokens: a read scope and an admin scope, each only when configured."""

from __future__ import annotations

import hmac

from fastapi import Request

from node.web.problems import Problem

__all__ = ["require_admin", "require_read"]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(given, expected)


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="precedent"'}


def require_read(request: Request) -> None:
    """Routes that read: open unless a read token is configured."""
    http = request.app.state.services.settings.http
    if http.read_token is None:
        return
    token = _bearer(request)
    if token is None:
        raise Problem(401, "this node requires a bearer token: send "
                      "'Authorization: Bearer <token>'", headers=_CHALLENGE)
    if not (_matches(token, http.read_token) or _matches(token, http.admin_token)):
        raise Problem(401, "the bearer token is not valid for this node", headers=_CHALLENGE)


def require_admin(request: Request) -> None:
    """Routes that change configuration or delete: need the admin token when one is set."""
    http = request.app.state.services.settings.http
    if http.admin_token is None:
        return
    token = _bearer(request)
    if token is None:
        raise Problem(401, "this route requires the admin bearer token",
                      headers=_CHALLENGE)
    if not _matches(token, http.admin_token):
        if _matches(token, http.read_token):
            raise Problem(403, "a read token cannot change the configuration or delete; "
                          "use the admin token")
        raise Problem(401, "the bearer token is not valid for this node", headers=_CHALLENGE)
