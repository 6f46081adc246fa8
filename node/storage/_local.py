"""One catalog connection per thread, opened on first use (:class:`database.ThreadConnections`
with the catalog's tables created once, here)."""

from __future__ import annotations

import database
from node.storage._schema import ensure_schema

__all__ = ["ThreadConnections"]


class ThreadConnections(database.ThreadConnections):
    """Hands each thread its own connection to the catalog; the tables are created once,
    when this is built."""

    def __init__(self, catalog: database.Target) -> None:
        super().__init__(catalog, schema=ensure_schema)
        self.catalog = catalog
