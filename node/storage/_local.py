"""One catalog connection per thread, opened on first use (:class:`database.ThreadConnections`
with the catalog's tables created once, here)."""

from __future__ import annotations

import logging

import database
from node.storage._schema import collation_problem, ensure_schema

__all__ = ["ThreadConnections"]

log = logging.getLogger(__name__)


class ThreadConnections(database.ThreadConnections):
    """Hands each thread its own connection to the catalog; the tables are created once,
    when this is built (and a PostgreSQL catalog's text order checked: a warning)."""

    def __init__(self, catalog: database.Target) -> None:
        super().__init__(catalog, schema=ensure_schema)
        self.catalog = catalog
        if database.dialect_for(catalog) is database.DialectValues.POSTGRESQL:
            conn = database.connect(catalog)
            try:
                problem = collation_problem(conn)
            finally:
                conn.close()
            if problem is not None:
                log.warning("%s", problem)
