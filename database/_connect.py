"""Opening a catalog connection, whatever the dialect: autocommit (transactions are
explicit), rows readable by name and by position, ``?`` parameters.

SQLite: WAL, ``synchronous=FULL``, a busy timeout. PostgreSQL: see
:mod:`database._postgres`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from database._dialect import DialectValues, dialect_for
from database._postgres import PostgresConnection, connect_postgresql

__all__ = [
    "BUSY_TIMEOUT_S", "CatalogConnection", "Connection", "Cursor", "Target", "connect",
    "is_broken", "stream",
]

#: where a catalog is: a SQLite file's path (or ``sqlite:///path``), or a
#: ``postgresql://`` URL
Target = str | os.PathLike[str]

#: how long a SQLite writer waits for another one's lock before SQLite gives up
BUSY_TIMEOUT_S = 30.0


class Cursor(Protocol):
    """What a statement returns, on either dialect (rows are read by position and name)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class CatalogConnection(Protocol):
    """A catalog connection: :class:`sqlite3.Connection` or
    :class:`database._postgres.PostgresConnection`, through the methods both have."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def executescript(self, sql: str, /) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


#: what :func:`connect` is typed to return. The packages still annotate their connections
#: as SQLite's; until they annotate them as :class:`CatalogConnection` (issue 13, when the
#: packages move to both dialects) this alias stays SQLite's type, and a PostgreSQL
#: connection, which has the same methods (:func:`_conforms` has mypy check it), is
#: handed out under it.
Connection = sqlite3.Connection


def connect(target: str | os.PathLike[str]) -> Connection:
    """Open the catalog at ``target``: a file path or ``sqlite:///path`` (SQLite), or a
    ``postgresql://user@host:port/database`` URL.

    The connection is in autocommit mode: every write goes inside :func:`transaction`.
    Changes are durable when the transaction commits (SQLite: WAL, ``synchronous=FULL``;
    PostgreSQL: ``synchronous_commit`` at least ``local``). A connection belongs to the
    thread that uses it (see :class:`ThreadConnections`); it may be handed to another
    thread before use. For SQLite the folder is created when missing; no table is.
    """
    return cast(Connection, _CONNECTORS[dialect_for(target)](os.fspath(target)))


def stream(conn: CatalogConnection, sql: str, parameters: Sequence[Any] = (), *,
           size: int = 1000) -> Iterator[Any]:
    """The rows of a query, ``size`` at a time, without loading the whole result (a
    scan over millions of vectors): the sqlite3 cursor as it reads; on PostgreSQL
    psycopg's row streaming (the rows are not held client-side)."""
    if isinstance(conn, PostgresConnection):
        yield from conn.stream(sql, parameters, size=size)
        return
    cursor = conn.execute(sql, parameters)
    while rows := cursor.fetchmany(size):
        yield from rows


def is_broken(conn: CatalogConnection) -> bool:
    """True when the server dropped this connection (PostgreSQL; a SQLite file is never
    dropped)."""
    return isinstance(conn, PostgresConnection) and conn.broken


def _conforms(conn: PostgresConnection) -> CatalogConnection:
    """Never called: mypy checks here that the PostgreSQL connection has every method."""
    return conn


def _connect_sqlite(target: str) -> sqlite3.Connection:
    path = Path(target.removeprefix("sqlite://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    return conn


#: one connector per dialect
_CONNECTORS: dict[DialectValues, Callable[[str], CatalogConnection]] = {
    DialectValues.SQLITE: _connect_sqlite,
    DialectValues.POSTGRESQL: connect_postgresql,
}
