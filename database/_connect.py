"""Opening a catalog connection: autocommit (transactions are explicit), WAL,
``synchronous=FULL``, a busy timeout, rows readable by name and by position."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from database._dialect import DialectValues, dialect_for

__all__ = ["BUSY_TIMEOUT_S", "Connection", "connect"]

#: how long a writer waits for another one's lock before SQLite gives up
BUSY_TIMEOUT_S = 30.0

#: what :func:`connect` returns; a second dialect widens this alias
Connection = sqlite3.Connection


def connect(target: str | os.PathLike[str]) -> Connection:
    """Open the catalog at ``target`` (a file path, or ``sqlite:///path``).

    The connection is in autocommit mode: every write goes inside :func:`transaction`.
    Changes are durable when the transaction commits (WAL, ``synchronous=FULL``). A
    connection belongs to the thread that uses it (see :class:`ThreadConnections`); it
    may be handed to another thread before use, so the sqlite3 module's own thread check
    is off. The folder is created when missing; no table is.
    """
    return _CONNECTORS[dialect_for(target)](os.fspath(target))


def _connect_sqlite(target: str) -> Connection:
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
_CONNECTORS: dict[DialectValues, Callable[[str], Connection]] = {
    DialectValues.SQLITE: _connect_sqlite,
}
