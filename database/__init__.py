"""One way to open the catalog and one way to run a transaction on it, on SQLite (the
default, one file beside the data) or PostgreSQL (psycopg 3, several processes and
machines on one catalog).

Every package that keeps tables in the catalog (``node.storage``, ``indexer``) opens its
connections with :func:`connect`, holds one per thread with :class:`ThreadConnections`,
creates its tables with :func:`execute_schema` and writes inside :func:`transaction`, or
:func:`retrying` where a transaction may collide with a concurrent one (PostgreSQL
answers such a collision with a serialization failure or a deadlock, never SQLite, whose
writers queue up). This package knows no table: :func:`copy_table` copies one a
package names from a SQLite catalog into a PostgreSQL one (``precedent catalog migrate``).

The packages write one SQL for both dialects (:class:`DialectValues`): ``?`` parameters
(translated for psycopg), ``INSERT … ON CONFLICT … DO UPDATE/NOTHING`` rather than
``INSERT OR REPLACE``, ``RETURNING``, SQLite's type names in schema scripts (translated
for PostgreSQL by :func:`translate_schema`). Rows read by position and by name on both.
Driver errors are caught as :data:`DatabaseError` / :data:`IntegrityError`.

This package imports no other package of the project.
"""

from __future__ import annotations

from database._connect import (
    CatalogConnection,
    Connection,
    Cursor,
    Target,
    connect,
    is_broken,
    stream,
)
from database._copy import (
    PROGRESS_TABLE,
    CopyError,
    Orphan,
    TableProgress,
    copy_table,
    count_rows,
    ensure_progress,
    keyless,
    lock_target,
    orphans,
    progress_of,
    source_tables,
)
from database._ddl import UntranslatableSchema, execute_schema, translate_schema
from database._dialect import (
    DialectValues,
    IsolationValues,
    UnsupportedDatabase,
    dialect_for,
    dialect_of,
)
from database._errors import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    is_conflict,
    is_disk_full,
)
from database._placeholders import UnsupportedPlaceholder
from database._postgres import CatalogUnavailable, PostgresConnection, redact
from database._row import Row
from database._threads import ThreadConnections
from database._transaction import NestedTransaction, backoff_s, retrying, transaction

__all__ = [
    "PROGRESS_TABLE",
    "CatalogConnection",
    "CatalogUnavailable",
    "Connection",
    "CopyError",
    "Cursor",
    "DatabaseError",
    "DialectValues",
    "IntegrityError",
    "IsolationValues",
    "NestedTransaction",
    "OperationalError",
    "Orphan",
    "PostgresConnection",
    "Row",
    "TableProgress",
    "Target",
    "ThreadConnections",
    "UnsupportedDatabase",
    "UnsupportedPlaceholder",
    "UntranslatableSchema",
    "backoff_s",
    "connect",
    "copy_table",
    "count_rows",
    "dialect_for",
    "dialect_of",
    "ensure_progress",
    "execute_schema",
    "is_broken",
    "is_conflict",
    "is_disk_full",
    "keyless",
    "lock_target",
    "orphans",
    "progress_of",
    "redact",
    "retrying",
    "source_tables",
    "stream",
    "transaction",
    "translate_schema",
]
