"""Where the node is and how a call to it is stopped: settings, the DICOMweb base URL,
and the cancel flag every background call checks. No Qt and no network here.

    settings = NodeSettings(url="http://pacs-node:8080", token="…")
    dicomweb_base_url(settings.url)        # "http://pacs-node:8080/dicom-web"
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from viewer_plugin.errors import QueryCancelled

__all__ = ["DEFAULT_URL", "CancelToken", "NodeSettings", "dicomweb_base_url"]

#: the node's HTTP port out of the box (``[http] port``); the panel's default
DEFAULT_URL = "http://127.0.0.1:8080"


def dicomweb_base_url(url: str) -> str:
    """The DICOMweb base for what a user typed.

    ``http://host:8080`` → ``http://host:8080/dicom-web``; a URL that already has a
    path (``…/dicom-web``, or a proxy prefix) is kept as given.
    """
    url = url.strip()
    if not url:
        raise ValueError("url: the node URL is empty")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url: scheme {parts.scheme!r} is not http or https")
    if not parts.netloc:
        raise ValueError(f"url: {url!r} has no host")
    path = parts.path.rstrip("/")
    if not path:
        path = "/dicom-web"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSettings:
    """Where the node is and how to talk to it."""

    url: str = DEFAULT_URL
    token: str = ""
    timeout: float = 20.0

    def __post_init__(self) -> None:
        dicomweb_base_url(self.url)  # validates, naming the argument
        if self.timeout <= 0:
            raise ValueError(f"timeout: must be positive, got {self.timeout}")

    def __repr__(self) -> str:  # never print the token
        masked = "set" if self.token else "none"
        return f"NodeSettings(url={self.url!r}, token=<{masked}>, timeout={self.timeout})"


class CancelToken:
    """A flag a background task checks between network calls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise QueryCancelled()
