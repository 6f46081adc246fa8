"""UID validation: a UID names files on disk, so it is checked before any path is formed."""

from __future__ import annotations

import re

from node.errors import InvalidInstance

__all__ = ["is_valid_uid", "validate_uid"]

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_LENIENT_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(value: object) -> bool:
    """True for a UID of digits and dots, at most 64 characters.

    Leading zeros in a component are tolerated (real archives hold such UIDs);
    anything that could leave the storage folder (``/``, ``..``, spaces) is not.
    """
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_LENIENT_UID.match(value))


def validate_uid(value: object, name: str) -> str:
    """Return ``value`` as a UID, or raise :class:`InvalidInstance` naming ``name``."""
    if value is None or value == "":
        raise InvalidInstance(f"{name} is missing")
    text = str(value).rstrip("\x00 ")
    if not is_valid_uid(text):
        raise InvalidInstance(
            f"{name} {text[:80]!r} is not a valid UID (digits and dots, at most 64 characters)"
        )
    return text
