"""What can go wrong when the viewer talks to the node, in plain words.

One hierarchy; every foreign exception (``requests``, JSON decoding) is wrapped
with ``raise … from`` at the client's boundary, so the panel only ever sees these::

    PrecedentError                  base: ``message`` (what happened), ``hint`` (what to do)
     ├── NodeUnreachable            no connection (refused, DNS, reset)
     ├── NodeTimeout                the node did not answer in time
     ├── QueryCancelled             a newer query superseded this one, or the user cancelled
     └── NodeRefused                the node answered with an error status
          ├── TokenRefused          401 (no or wrong token) and 403 (token lacks the scope)
          ├── NotFound              404 (unknown study, series, instance or report)
          ├── BadQuery              400 / 415 / 422 (the request needs changing)
          ├── ModelNotLoaded        503 (the node's model is not loaded; ``detail`` says why)
          └── NodeFailed            any other status, or an answer that cannot be read

``NodeRefused`` carries ``status`` and the RFC 7807 ``title`` / ``detail`` of the
node's problem body when there is one.
"""

from __future__ import annotations

__all__ = [
    "BadQuery",
    "ModelNotLoaded",
    "NodeFailed",
    "NodeRefused",
    "NodeTimeout",
    "NodeUnreachable",
    "NotFound",
    "PrecedentError",
    "QueryCancelled",
    "TokenRefused",
]


class PrecedentError(Exception):
    """Base of every error the viewer plugin raises.

    ``message`` says what happened, ``hint`` what the user can do about it.
    """

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class NodeUnreachable(PrecedentError):
    """The node could not be reached at all."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"Cannot reach the Precedent node at {url}.",
            hint="Check that the node is running and that the node URL in the settings is right.",
        )
        self.url = url


class NodeTimeout(PrecedentError):
    """The node accepted the connection but did not answer in time."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(
            f"The Precedent node at {url} did not answer within {seconds:g} s.",
            hint="The node may be busy; try again, or raise the timeout in the settings.",
        )
        self.url = url
        self.seconds = seconds


class QueryCancelled(PrecedentError):
    """The query was cancelled (by the user, or by a newer query)."""

    def __init__(self) -> None:
        super().__init__("The query was cancelled.")


class NodeRefused(PrecedentError):
    """The node answered with an HTTP error status."""

    default_hint = ""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        title: str = "",
        detail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=self.default_hint if hint is None else hint)
        self.status = status
        self.title = title
        self.detail = detail


class TokenRefused(NodeRefused):
    """401 (missing or wrong token) or 403 (the token lacks the scope)."""

    default_hint = "Enter a valid access token for this node in the settings (ask your IT admin)."


class NotFound(NodeRefused):
    """404: the node does not know the object asked for."""

    default_hint = "The study may not have been sent to the node yet, or was deleted."


class BadQuery(NodeRefused):
    """400 / 415 / 422: the request needs changing."""

    default_hint = "Change the query (filters, image, text) and try again."


class ModelNotLoaded(NodeRefused):
    """503: the node's model is not loaded, so it cannot compare images."""

    default_hint = (
        "Similar-case search is unavailable until the node's model is loaded; "
        "ask your IT admin."
    )


class NodeFailed(NodeRefused):
    """Any other error status, or an answer the viewer cannot read."""

    default_hint = "Try again later; if it persists, tell your IT admin."
