"""Bearer tokens: a read scope (only when a read token is configured) and an admin scope
(always: the running node makes an admin token at its first start when none is
configured, :mod:`node.data_folder`).

``require_read`` and ``require_admin`` are FastAPI dependencies; a refusal is an
:class:`~node.errors.Unauthorized` (401, with the ``WWW-Authenticate`` challenge) or a
:class:`~node.errors.Forbidden` (403). Tokens are compared as bytes in constant time: a
header carries bytes (read as Latin-1 by the server), a configured token is UTF-8 text,
so any token, ASCII or not, is either accepted or refused with 401.
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
    if given is None or expected is None:
        return False
    # the header's own bytes (the server decoded them as Latin-1) against the token's UTF-8
    return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8"))


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
    """Routes that change configuration, delete or run operations: the admin token."""
    http = services.settings.http
    if http.admin_token is None:
        raise Forbidden("administration is off on this node: no admin token is configured "
                        "(set [http] admin_token; `precedent serve` makes one at first start)")
    token = _bearer(request)
    if token is None:
        raise Unauthorized("this route requires the admin bearer token")
    if not _matches(token, http.admin_token):
        if _matches(token, http.read_token):
            raise Forbidden("a read token cannot change the configuration or delete; "
                            "use the admin token")
        raise Unauthorized("the bearer token is not valid for this node")
