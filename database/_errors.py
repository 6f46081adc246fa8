"""The driver's errors as the packages may catch them, whatever the dialect."""

from __future__ import annotations

import sqlite3

__all__ = ["DatabaseError", "is_disk_full"]

#: the base class of the driver's errors (a second dialect adds its own here)
DatabaseError = sqlite3.Error


def is_disk_full(exc: BaseException) -> bool:
    """True when the database could not grow because its disk is full (SQLITE_FULL)."""
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
