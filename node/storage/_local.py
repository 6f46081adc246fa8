"""One catalog connection per thread, opened on first use."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from node.storage._schema import connect

__all__ = ["ThreadConnections"]


class ThreadConnections:
    """Hands each thread its own connection to the catalog (SQLite connections are
    not to be shared between threads); the schema is created once, here."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        connect(self.db_path).close()
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.db_path, create_schema=False)
            self._local.conn = conn
        return conn
