"""The ``precedent`` command's way to the running node: found through the data folder's
lock (:mod:`node.data_folder`), spoken to over its admin API with the admin token.

The token is ``[http] admin_token`` when the command's settings have one, else the
token file the node names in its lock card (``data_dir/admin-token``): a command run by
the node's user (or root) needs nothing more. Every failure is a
:class:`~node.errors.NodeAdminError` in one line: the node's own problem detail when it
answered, or why it could not be reached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from node.data_folder import ADMIN_TOKEN_FILE, Owner, stored_admin_token
from node.errors import NodeAdminError
from node.settings import Settings

__all__ = ["AdminClient"]

#: how often an operation is looked at while the command follows it
_FOLLOW_S = 0.2


class AdminClient:
    """Requests to one running node's admin API."""

    def __init__(self, owner: Owner, token: str, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not owner.http_url:
            raise ValueError("owner must name the node's http_url")
        self.owner = owner
        self._client = httpx.Client(base_url=owner.http_url, transport=transport,
                                    headers={"Authorization": f"Bearer {token}"},
                                    timeout=httpx.Timeout(60.0, connect=5.0))

    @classmethod
    def for_owner(cls, owner: Owner, settings: Settings) -> AdminClient:
        """A client for ``owner`` (a running node), with the admin token this user has."""
        if owner.http_url is None:
            raise NodeAdminError(f"{owner.describe()} owns the data folder but names no HTTP "
                                 "address; stop it and run the command again")
        token = settings.http.admin_token
        token_file = Path(owner.admin_token_file) if owner.admin_token_file else (
            settings.node.data_dir / ADMIN_TOKEN_FILE)
        if token is None:
            token = stored_admin_token(token_file.parent)
        if token is None:
            raise NodeAdminError(
                f"{owner.describe()} owns the data folder, and its admin token cannot be read "
                f"by this user ({token_file}); run the command as the node's user, or set "
                "PRECEDENT_HTTP__ADMIN_TOKEN to the node's admin token")
        return cls(owner, token)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer (None for 204); :class:`NodeAdminError` otherwise."""
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise NodeAdminError(f"{self.owner.describe()} owns the data folder but does not "
                                 f"answer at {self.owner.http_url} ({type(exc).__name__}); "
                                 "is it still starting? Try again, or stop it") from None
        if response.status_code == 401:
            raise NodeAdminError(f"{self.owner.describe()} refused the admin token this user "
                                 "has; set PRECEDENT_HTTP__ADMIN_TOKEN to the node's admin "
                                 "token")
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail"))
            except ValueError:
                detail = response.text[:300]
            raise NodeAdminError(f"the node answered {response.status_code}: {detail}")
        return None if response.status_code == 204 else response.json()

    def follow(self, operation: dict[str, Any],
               on_progress: Callable[[dict[str, Any]], None],
               stop: threading.Event | None = None) -> dict[str, Any]:
        """Look at an operation until it is no longer running; ``on_progress`` gets each
        state. Returns the last one."""
        wait = stop or threading.Event()
        current = operation
        while True:
            on_progress(current)
            if current.get("state") != "running":
                return current
            if wait.wait(_FOLLOW_S):
                return current
            current = self.request("GET", f"/admin/operations/{current['id']}")
