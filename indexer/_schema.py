"""The indexer's tables in the catalog (``work``, ``vectors``, ``index_meta``, the volume
sampling's ``slices`` and ``volume_series``, and on PostgreSQL the ``vector_changes``
log), and :func:`ensure_schema`, which creates them and brings an older ``work`` table up
to date.

See docs/internals.md. The indexer is the only package that reads or writes these
tables; the node asks through :mod:`indexer.queue`, :mod:`indexer.index` and
:mod:`indexer.slices`.
"""

from __future__ import annotations

from database import Connection, DialectValues, dialect_of, execute_schema, transaction
from indexer import slices
from indexer._levels import LevelValues
from indexer.errors import QueueError
from indexer.queue import WorkStateValues

__all__ = ["SCHEMA", "ensure_schema"]


def _values(enum_type: type[WorkStateValues] | type[LevelValues]) -> str:
    return ", ".join(f"'{member.value}'" for member in enum_type)


#: the tables of :data:`SCHEMA` (``slices``' included) and the columns of their keys: the order
#: ``precedent catalog migrate`` copies them in (none references another)
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("work", ("sop_instance_uid",)),
    ("vectors", ("key",)),
    ("index_meta", ("key",)),
    ("slices", ("sop_instance_uid",)),
    ("volume_series", ("series_instance_uid",)),
    ("study_completion", ("study_instance_uid",)),
)

_WORK_COLUMNS = f"""
    sop_instance_uid TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '{WorkStateValues.PENDING.value}'
        CHECK (state IN ({_values(WorkStateValues)})),
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    not_before REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    enqueued_at REAL NOT NULL DEFAULT 0,
    claimed_by TEXT
"""
#: the claim reads only due pending rows: a partial index keeps it cheap at millions of
#: rows done (SQLite cannot index ``rowid`` by name, so both index ``not_before``)
_WORK_INDEX = f"""CREATE INDEX IF NOT EXISTS work_state ON work (state, not_before);
CREATE INDEX IF NOT EXISTS work_pending ON work (not_before)
    WHERE state = '{WorkStateValues.PENDING.value}';"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS work ({_WORK_COLUMNS});
{_WORK_INDEX}

CREATE TABLE IF NOT EXISTS vectors (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    level TEXT NOT NULL CHECK (level IN ({_values(LevelValues)})),
    uid TEXT NOT NULL,
    parent_uid TEXT,
    study_instance_uid TEXT NOT NULL,
    patient_id TEXT,
    modality TEXT,
    body_part TEXT,
    study_date TEXT,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (level, uid)
);
CREATE INDEX IF NOT EXISTS vectors_parent ON vectors (level, parent_uid);
CREATE INDEX IF NOT EXISTS vectors_study ON vectors (level, study_instance_uid);
-- covers every search filter: the allowed keys are found without reading a vector
CREATE INDEX IF NOT EXISTS vectors_filter
    ON vectors (level, modality, body_part, study_date, patient_id, uid);

CREATE TABLE IF NOT EXISTS index_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
{slices.SCHEMA}
"""

#: PostgreSQL only (docs/postgres.md §6): one row per vector changed, written in the
#: changing transaction, so every serving process can follow ``vectors`` without a
#: counter every writer would update (append-only: writers never collide on it)
CHANGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS vector_changes (
    level TEXT NOT NULL,
    key INTEGER NOT NULL,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS vector_changes_txid ON vector_changes (txid);
CREATE INDEX IF NOT EXISTS vector_changes_at ON vector_changes (at);
"""


def _work_is_current(conn: Connection) -> bool:
    """Whether ``work`` is missing or has every state and ``enqueued_at`` (older catalogs
    are SQLite's: a PostgreSQL catalog starts with them)."""
    if dialect_of(conn) is not DialectValues.SQLITE:
        return True
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'work'"
    ).fetchone()
    return row is None or (
        "enqueued_at" in str(row[0]) and WorkStateValues.NOT_SAMPLED.value in str(row[0])
    )


def _add_claimed_by(conn: Connection) -> None:
    """A ``work`` table from before shared catalogs gets its ``claimed_by`` column."""
    if dialect_of(conn) is DialectValues.POSTGRESQL:
        execute_schema(conn, "ALTER TABLE work ADD COLUMN IF NOT EXISTS claimed_by TEXT;")
        return
    with transaction(conn):
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(work)")}
        if columns and "claimed_by" not in columns:
            conn.execute("ALTER TABLE work ADD COLUMN claimed_by TEXT")


def _upgrade_work(conn: Connection) -> None:
    """A ``work`` table of an older version (no ``not_sampled`` state, no ``enqueued_at``)
    is copied into the current form, every row kept (arrival: its last update)."""
    with transaction(conn):
        if _work_is_current(conn):
            return  # another connection upgraded it meanwhile
        conn.execute(f"CREATE TABLE work_upgrade ({_WORK_COLUMNS})")
        conn.execute(
            "INSERT INTO work_upgrade (sop_instance_uid, path, state, attempts, reason,"
            " not_before, updated_at, enqueued_at) SELECT sop_instance_uid, path, state,"
            " attempts, reason, not_before, updated_at, updated_at FROM work"
        )
        conn.execute("DROP TABLE work")
        conn.execute("ALTER TABLE work_upgrade RENAME TO work")
        for statement in _WORK_INDEX.split(";"):
            if statement.strip():
                conn.execute(statement)


def ensure_schema(conn: Connection) -> None:
    """Create the indexer's tables if missing, and upgrade an older ``work`` table
    (idempotent; outside a transaction)."""
    if conn.in_transaction:
        raise QueueError("ensure_schema must be called outside a transaction")
    if not _work_is_current(conn):
        _upgrade_work(conn)
    execute_schema(conn, SCHEMA)
    _add_claimed_by(conn)
    if dialect_of(conn) is DialectValues.POSTGRESQL:
        execute_schema(conn, CHANGES_SCHEMA)
