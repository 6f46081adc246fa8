"""The SQL dialects the catalog can be kept in, the isolation levels a transaction may ask
for, and how to tell which dialect a target or a connection is."""

from __future__ import annotations

import enum
import os
import sqlite3

__all__ = [
    "DialectValues",
    "IsolationValues",
    "UnsupportedDatabase",
    "dialect_for",
    "dialect_of",
]

#: URL schemes that name a PostgreSQL catalog (libpq accepts both)
_POSTGRESQL_SCHEMES = ("postgresql", "postgres")


class UnsupportedDatabase(ValueError):
    """A catalog target (file path or URL) names a database this node cannot use."""


class IsolationValues(str, enum.Enum):
    """How much a write transaction is protected from concurrent ones.

    ``serializable`` (the default) behaves as if transactions ran one after another; on
    PostgreSQL a transaction that cannot be placed in such an order fails with a
    serialization failure and is run again by :func:`database.retrying`. ``read committed``
    is for paths designed for concurrency, such as a queue claimed with ``FOR UPDATE SKIP
    LOCKED``, where serializable would make every pair of claims collide. SQLite runs one
    writer at a time, so it is serializable whatever is asked.
    """

    SERIALIZABLE = "serializable"
    READ_COMMITTED = "read committed"


class DialectValues(str, enum.Enum):
    """The database engines the catalog can live in."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"

    @property
    def placeholder(self) -> str:
        """The parameter marker the packages write (``?``, for both dialects: the
        PostgreSQL connection translates it to psycopg's ``%s``)."""
        return "?"

    def begin(self, isolation: IsolationValues = IsolationValues.SERIALIZABLE) -> str:
        """The statement that opens a write transaction.

        SQLite takes the write lock at once (``BEGIN IMMEDIATE``), so two writers never
        deadlock halfway through; PostgreSQL names the isolation level.
        """
        if self is DialectValues.SQLITE:
            return "BEGIN IMMEDIATE"
        return f"BEGIN ISOLATION LEVEL {IsolationValues(isolation).value.upper()}"


    # -- the few fragments written differently (docs/postgres.md §3) -------------------

    @property
    def skip_locked(self) -> str:
        """Appended to a queue's claiming ``SELECT``: rows another claimer holds are
        skipped, not waited for (PostgreSQL); SQLite has one writer at a time."""
        return " FOR UPDATE SKIP LOCKED" if self is DialectValues.POSTGRESQL else ""

    @property
    def strpos(self) -> str:
        """The function ``f(text, part)`` giving the 1-based position of ``part`` in
        ``text`` (0 when absent): ``instr`` in SQLite, ``strpos`` in PostgreSQL."""
        return "strpos" if self is DialectValues.POSTGRESQL else "instr"

    def string_agg(self, expr: str) -> str:
        """The comma-joined distinct values of ``expr`` in a group (SQLite has
        ``string_agg`` only from 3.44)."""
        if self is DialectValues.POSTGRESQL:
            return f"string_agg(DISTINCT {expr}, ',')"
        return f"group_concat(DISTINCT {expr})"

    def no_index(self, column: str) -> str:
        """``column`` in a form the planner will not use an index for (SQLite's unary
        ``+``; PostgreSQL plans on statistics and needs no hint)."""
        return f"+{column}" if self is DialectValues.SQLITE else column

    def wildcard(self, column: str, pattern: str, *,
                 case_sensitive: bool = True) -> tuple[str, str]:
        r"""The condition that ``column`` matches the DICOM wildcard ``pattern`` (``*``
        any run of characters, ``?`` one; PS3.4 C.2.2.2.4), and its one parameter.

        SQLite: ``GLOB`` (case-sensitive; ``lower()`` on both sides otherwise: ASCII
        only). PostgreSQL: ``LIKE``/``ILIKE`` with ``%``, ``_`` and ``\`` escaped
        (``ILIKE`` folds case beyond ASCII).
        """
        if self is DialectValues.SQLITE:
            glob = "".join(f"[{c}]" if c in "[]" else c for c in pattern)
            if case_sensitive:
                return f"{column} GLOB ?", glob
            return f"lower({column}) GLOB lower(?)", glob
        like = "".join(
            "%" if c == "*" else "_" if c == "?" else f"\\{c}" if c in "%_\\" else c
            for c in pattern
        )
        op = "LIKE" if case_sensitive else "ILIKE"
        return f"{column} {op} ? ESCAPE '\\'", like


def dialect_for(target: str | os.PathLike[str]) -> DialectValues:
    """The dialect of a catalog target: a file path (or ``sqlite:///path``) is SQLite, a
    ``postgresql://…`` (or ``postgres://…``) URL is PostgreSQL.

    Raises :class:`UnsupportedDatabase` for a URL of another database.
    """
    text = os.fspath(target)
    scheme, sep, _ = text.partition("://")
    if not sep or scheme == "sqlite":
        return DialectValues.SQLITE
    if scheme in _POSTGRESQL_SCHEMES:
        return DialectValues.POSTGRESQL
    raise UnsupportedDatabase(
        f"the catalog {scheme}://… is not supported: give the path of a SQLite file or a "
        "postgresql://user@host:port/database URL"
    )


def dialect_of(conn: object) -> DialectValues:
    """The dialect of an open connection."""
    if isinstance(conn, sqlite3.Connection):
        return DialectValues.SQLITE
    # imported here: the PostgreSQL connection module imports this one
    from database._postgres import PostgresConnection

    if isinstance(conn, PostgresConnection):
        return DialectValues.POSTGRESQL
    raise UnsupportedDatabase(f"{type(conn).__name__} is not a catalog connection")
