"""One catalog connection per thread, opened on first use."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from database._connect import Connection, connect, is_broken

__all__ = ["ThreadConnections"]


class ThreadConnections:
    """Hands each thread its own connection to the catalog (a connection is never
    shared between threads).

    ``schema``, when given, is called once here with a fresh connection, to create the
    tables its package owns (it must be idempotent).
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        schema: Callable[[Connection], None] | None = None,
    ) -> None:
        self.target = target
        if schema is not None:
            conn = connect(self.target)
            try:
                schema(conn)
            finally:
                conn.close()
        self._local = threading.local()

    def get(self) -> Connection:
        """This thread's connection (opened on first use, and again when the server
        dropped it)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and is_broken(conn):
            conn.close()
            conn = None
        if conn is None:
            conn = connect(self.target)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection, if it has one (others close with their thread)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
