"""The running node's admin API over HTTP (httpx), for the commands that act through the
node: ``precedent backfill …`` and ``precedent import collection`` while it runs.

The node is found where the settings put its HTTP side (``[http] host`` and ``port``;
a node listening on every address is asked on loopback), with the admin token from
``[http] admin_token`` or, when that is unset, the node's ``data_dir/admin-token`` file.
A node that does not answer is :class:`~node.errors.NodeNotRunning`; a problem answer is
:class:`~node.errors.NodeRefused` with the problem's detail, so the command prints one
line saying what to change.
"""

from __future__ import annotations

from typing import Any

import httpx

from node.errors import NodeNotRunning, NodeRefused
from node.settings import Settings

__all__ = ["NodeApi"]

#: the file a node keeps a generated admin token in (when ``[http] admin_token`` is unset)
ADMIN_TOKEN_FILE = "admin-token"


class NodeApi:
    """A client of one node's admin routes."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        http = settings.http
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
        self.base_url = f"http://{host}:{http.port}"
        token = http.admin_token
        token_file = settings.node.data_dir / ADMIN_TOKEN_FILE
        if token is None and token_file.is_file():
            token = token_file.read_text(encoding="utf-8").strip() or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                    transport=transport)

    def __enter__(self) -> NodeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def running(self) -> bool:
        """Whether a node answers at :attr:`base_url`."""
        try:
            return self._client.get("/health", timeout=3.0).status_code < 500
        except httpx.HTTPError:
            return False

    def _answer(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail") or response.reason_phrase)
            except ValueError:
                detail = response.reason_phrase
            if response.status_code in (401, 403):
                detail += (" (commands send [http] admin_token from their settings: "
                           "--config, or PRECEDENT_HTTP__ADMIN_TOKEN)")
            raise NodeRefused(detail, http_status=response.status_code)
        return response.json() if response.content else None

    def request(self, method: str, path: str, *, json: Any = None,
                timeout: float | None = None) -> Any:
        try:
            response = self._client.request(
                method, path, json=json,
                timeout=timeout if timeout is not None else self._client.timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise NodeNotRunning(
                f"the node does not answer at {self.base_url}: start it with `precedent "
                "serve` (or point --config/--data-dir at the node's settings)") from exc
        except httpx.HTTPError as exc:
            raise NodeNotRunning(f"the node at {self.base_url} did not answer: "
                                 f"{type(exc).__name__}") from exc
        return self._answer(response)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, json: Any = None, *, timeout: float | None = None) -> Any:
        return self.request("POST", path, json=json, timeout=timeout)
