"""The node's exceptions: one hierarchy, turned into protocol answers at the boundary.

::

    PrecedentError
    ├── SettingsError            a setting is wrong; start-up stops with its message
    ├── AdminError               an AE-title administration request cannot be done
    │   ├── AlreadyExists        409 on REST, an error line on the command line
    │   └── NotFound             404
    └── IngestError              an instance cannot be stored; carries its DIMSE status
        ├── InvalidInstance      undecodable, missing or inconsistent UIDs (0xC000 range)
        ├── SopClassMismatch     the data set does not match its SOP class (0xA900)
        ├── DuplicateRejected    same SOP Instance UID, policy "reject" (0xA700 range)
        └── OutOfResources       the disk is full or below the reserve (0xA700)

Handlers catch :class:`IngestError` only, and answer with its ``status``; anything
else is a bug and is logged as such by the protocol adapter.
"""

from __future__ import annotations

__all__ = [
    "AdminError",
    "AlreadyExists",
    "DuplicateRejected",
    "IngestError",
    "InvalidInstance",
    "NotFound",
    "OutOfResources",
    "PrecedentError",
    "SettingsError",
    "SopClassMismatch",
]


class PrecedentError(Exception):
    """Base of every error the node raises on purpose."""


class SettingsError(PrecedentError):
    """A setting is missing or wrong; the message names it and the allowed values."""


class AdminError(PrecedentError):
    """An administration request cannot be carried out."""


class AlreadyExists(AdminError):
    """The AE title (or other key) is configured already."""


class NotFound(AdminError):
    """The named AE title (or other key) is not configured."""


class IngestError(PrecedentError):
    """An instance was not stored. ``status`` is the DIMSE status to answer with."""

    status: int = 0xC000
    http_status: int = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidInstance(IngestError):
    """The data set cannot be understood: undecodable, or UIDs missing or invalid."""

    status = 0xC210


class SopClassMismatch(IngestError):
    """The data set's SOP Class UID differs from the one it was sent as."""

    status = 0xA900
    http_status = 409


class DuplicateRejected(IngestError):
    """The SOP Instance UID is stored already and the policy says reject."""

    status = 0xA770
    http_status = 409


class OutOfResources(IngestError):
    """The disk is full, or free space is below the configured reserve."""

    status = 0xA700
    http_status = 507
