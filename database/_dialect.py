"""The SQL dialects the catalog can be kept in, and how to tell which one a target or a
connection is."""

from __future__ import annotations

import enum
import os
import sqlite3

__all__ = ["DialectValues", "UnsupportedDatabase", "dialect_for", "dialect_of"]


class UnsupportedDatabase(ValueError):
    """A catalog target (file path or URL) names a database this node cannot use."""


class DialectValues(str, enum.Enum):
    """The database engines the catalog can live in."""

    SQLITE = "sqlite"

    @property
    def placeholder(self) -> str:
        """The parameter marker of this dialect's driver (``?`` for sqlite3)."""
        return "?"

    @property
    def begin(self) -> str:
        """The statement that opens a write transaction at once (SQLite takes the write
        lock now, so two writers never deadlock halfway through)."""
        return "BEGIN IMMEDIATE"


def dialect_for(target: str | os.PathLike[str]) -> DialectValues:
    """The dialect of a catalog target: a file path (or ``sqlite:///path``) is SQLite.

    Raises :class:`UnsupportedDatabase` for a URL of another database.
    """
    text = os.fspath(target)
    scheme, sep, _ = text.partition("://")
    if not sep or scheme == "sqlite":
        return DialectValues.SQLITE
    raise UnsupportedDatabase(
        f"the catalog {scheme}://… is not supported: give the path of a SQLite file "
        "(PostgreSQL is planned, not available yet)"
    )


def dialect_of(conn: object) -> DialectValues:
    """The dialect of an open connection."""
    if isinstance(conn, sqlite3.Connection):
        return DialectValues.SQLITE
    raise UnsupportedDatabase(f"{type(conn).__name__} is not a catalog connection")
