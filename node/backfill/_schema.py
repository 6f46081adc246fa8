"""The backfill plan's tables, owned by :mod:`node.backfill` (see docs/internals.md):
``backfill_jobs``, ``backfill_windows`` and ``backfill_studies``. Only
:mod:`node.backfill.plan` and :mod:`node.backfill.progress` read or write them.
"""

from __future__ import annotations

import database
from database import Connection
from node.backfill.request import ViaValues
from node.backfill.states import JobStateValues, PlanStateValues, RetrieveModeValues

__all__ = ["SCHEMA", "ensure_schema"]


def _values(enum_type: type[JobStateValues | PlanStateValues | RetrieveModeValues |
                            ViaValues]) -> str:
    return ", ".join(f"'{member.value}'" for member in enum_type)


#: the tables below and the columns of their keys, parents first: the order ``precedent
#: catalog migrate`` copies them in
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("backfill_jobs", ("id",)),
    ("backfill_windows", ("job_id", "date_from", "date_to", "time_from", "time_to")),
    ("backfill_studies", ("job_id", "study_instance_uid")),
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS backfill_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    via TEXT NOT NULL CHECK (via IN ({_values(ViaValues)})),
    retrieve TEXT NOT NULL CHECK (retrieve IN ({_values(RetrieveModeValues)})),
    since TEXT NOT NULL,
    until TEXT NOT NULL,
    modalities TEXT NOT NULL DEFAULT '',
    time_window TEXT,
    rate REAL,
    concurrency INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({_values(JobStateValues)})),
    note TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL
);

CREATE TABLE IF NOT EXISTS backfill_windows (
    job_id INTEGER NOT NULL REFERENCES backfill_jobs(id),
    date_from TEXT NOT NULL,
    date_to TEXT NOT NULL,
    time_from TEXT NOT NULL DEFAULT '',
    time_to TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ({_values(PlanStateValues)})),
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    studies INTEGER,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, date_from, date_to, time_from, time_to)
);

CREATE TABLE IF NOT EXISTS backfill_studies (
    job_id INTEGER NOT NULL REFERENCES backfill_jobs(id),
    study_instance_uid TEXT NOT NULL,
    study_date TEXT,
    remote_instances INTEGER,
    modalities TEXT,
    state TEXT NOT NULL CHECK (state IN ({_values(PlanStateValues)})),
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    wanted INTEGER,
    received INTEGER,
    started_at REAL,
    started_local TEXT,
    finished_at REAL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, study_instance_uid)
);
CREATE INDEX IF NOT EXISTS backfill_studies_next
    ON backfill_studies (job_id, state, not_before);
"""


def ensure_schema(conn: Connection) -> None:
    """Create the plan's tables when missing (idempotent)."""
    database.execute_schema(conn, SCHEMA)
