"""The indexer's tables in the catalog (``work``, ``vectors``, ``index_meta``), and
:func:`ensure_schema`, which creates them.

See docs/internals.md. The indexer is the only package that reads or writes these
tables; the node asks through :mod:`indexer.queue` and :mod:`indexer.index`.
"""

from __future__ import annotations

from database import Connection
from indexer._levels import LevelValues
from indexer.errors import QueueError
from indexer.queue import WorkStateValues

__all__ = ["SCHEMA", "ensure_schema"]


def _values(enum_type: type[WorkStateValues] | type[LevelValues]) -> str:
    return ", ".join(f"'{member.value}'" for member in enum_type)


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS work (
    sop_instance_uid TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '{WorkStateValues.PENDING.value}'
        CHECK (state IN ({_values(WorkStateValues)})),
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    not_before REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS work_state ON work (state, not_before);

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
"""


def ensure_schema(conn: Connection) -> None:
    """Create the indexer's tables if missing (idempotent; outside a transaction)."""
    if conn.in_transaction:
        raise QueueError("ensure_schema must be called outside a transaction")
    conn.executescript(SCHEMA)
