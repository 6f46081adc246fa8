"""HTTP to the node: one ``requests`` session with the bearer token, and the one place
where a foreign failure (``requests``, unreadable JSON) becomes a
:mod:`viewer_plugin.errors` exception with a plain-words message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from viewer_plugin.connection import CancelToken, NodeSettings, dicomweb_base_url
from viewer_plugin.errors import (
    BadQuery,
    ModelNotLoaded,
    NodeFailed,
    NodeRefused,
    NodeTimeout,
    NodeUnreachable,
    NotFound,
    PrecedentError,
    TokenRefused,
)

__all__ = ["Transport", "error_from_response", "uid_segment"]

T = TypeVar("T")


def _problem(response: requests.Response) -> tuple[str, str]:
    """(title, detail) of an RFC 7807 body, or of a FastAPI ``{"detail": …}`` body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return "", text[:300] if text and "<html" not in text.lower() else ""
    if not isinstance(body, Mapping):
        return "", ""
    title = str(body.get("title") or "")
    detail = body.get("detail") or ""
    if not isinstance(detail, str):  # FastAPI validation errors: a list of dicts
        detail = json.dumps(detail)[:300]
    return title, detail


def error_from_response(response: requests.Response) -> NodeRefused:
    """The error a user reads for an HTTP error status of the node."""
    status = response.status_code
    title, detail = _problem(response)
    what = detail or title
    if status == 401:
        sent = {k.lower() for k in (response.request.headers if response.request else {})}
        return TokenRefused(
            "The node refused the access token (401)." if "authorization" in sent
            else "The node needs an access token (401).",
            status=status, title=title, detail=detail,
        )
    if status == 403:
        return TokenRefused(
            "The access token is not allowed to do this (403).",
            status=status, title=title, detail=detail,
            hint="Use a token with the right scope (ask your IT admin).",
        )
    if status == 404:
        return NotFound(
            f"Not found on the node: {what}" if what else "Not found on the node (404).",
            status=status, title=title, detail=detail,
        )
    if status in (400, 406, 413, 415, 422):
        return BadQuery(
            f"The node rejected the query ({status}): {what}" if what
            else f"The node rejected the query ({status}).",
            status=status, title=title, detail=detail,
        )
    if status == 503:
        return ModelNotLoaded(
            f"The node cannot search right now: {what}" if what
            else "The node cannot search right now (503): its model is not loaded.",
            status=status, title=title, detail=detail,
        )
    return NodeFailed(
        f"The node answered with an error ({status}): {what}" if what
        else f"The node answered with an error ({status}).",
        status=status, title=title, detail=detail,
    )


def uid_segment(uid: str, name: str) -> str:
    """A DICOM UID checked and quoted for a URL path (``name`` says which UID)."""
    uid = (uid or "").strip()
    if not uid or len(uid) > 64 or not all(c.isdigit() or c == "." for c in uid):
        raise BadQuery(f"{name} {uid!r} is not a DICOM UID.", status=0,
                       hint="Pick a study the node knows.")
    return quote(uid, safe=".")


class Transport:
    """One session to one node; :meth:`guard` maps every failure to ours."""

    def __init__(self, settings: NodeSettings, *, session: requests.Session | None = None,
                 cancel: CancelToken | None = None) -> None:
        self.settings = settings
        self.base_url = dicomweb_base_url(settings.url)
        self.cancel_token = cancel or CancelToken()
        self.session = session or requests.Session()
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        if settings.token:
            self.session.headers["Authorization"] = f"Bearer {settings.token}"

    @property
    def root_url(self) -> str:
        """The node's URL without the DICOMweb prefix (for ``/config/…``)."""
        return self.base_url.removesuffix("/dicom-web")

    def close(self) -> None:
        self.session.close()

    def guard(self, call: Callable[[], T]) -> T:
        """Run one network call, mapping every foreign failure to ours."""
        self.cancel_token.raise_if_cancelled()
        try:
            result = call()
        except PrecedentError:
            raise
        except requests.HTTPError as exc:
            if exc.response is None:
                raise NodeFailed(f"The node answered with an error: {exc}", status=0) from exc
            raise error_from_response(exc.response) from exc
        except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            raise NodeTimeout(self.base_url, self.settings.timeout) from exc
        except requests.ConnectionError as exc:
            raise NodeUnreachable(self.base_url) from exc
        except requests.RequestException as exc:
            raise NodeFailed(f"The request to the node failed: {exc}", status=0) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # unreadable answer
            raise NodeFailed(f"The node's answer could not be read: {exc}", status=0) from exc
        self.cancel_token.raise_if_cancelled()
        return result

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | Mapping[str, Any] | None = None,
        data: bytes | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One HTTP call (``path`` under the DICOMweb base, or a full URL); raises on error."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        response = self.session.request(
            method, url, params=params, data=data, json=json_body,
            headers=dict(headers or {}), timeout=self.settings.timeout,
        )
        response.raise_for_status()
        return response
