"""One way to open the catalog and one way to run a transaction on it.

Every package that keeps tables in the catalog (``node.storage``, ``indexer``) opens its
connections with :func:`connect`, holds one per thread with :class:`ThreadConnections`,
and writes inside :func:`transaction`. Each package creates its own tables through a
schema function it owns; this package knows no table.

The helper knows its dialect (:class:`DialectValues`): today only SQLite. A second
dialect (PostgreSQL through psycopg 3, issue 13) is a new member, a connector and a
``BEGIN`` form here; the SQL the packages write is kept to forms both dialects accept
(``INSERT … ON CONFLICT … DO UPDATE/NOTHING`` rather than ``INSERT OR REPLACE``), with
the placeholder the dialect names.

This package imports no other package of the project.
"""

from __future__ import annotations

from database._connect import Connection, connect
from database._dialect import DialectValues, UnsupportedDatabase, dialect_for, dialect_of
from database._errors import DatabaseError, is_disk_full
from database._threads import ThreadConnections
from database._transaction import NestedTransaction, transaction

__all__ = [
    "Connection",
    "DatabaseError",
    "DialectValues",
    "NestedTransaction",
    "ThreadConnections",
    "UnsupportedDatabase",
    "connect",
    "dialect_for",
    "dialect_of",
    "is_disk_full",
    "transaction",
]
