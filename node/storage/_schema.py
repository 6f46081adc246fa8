"""The catalog's tables, owned by ``node.storage`` (see docs/internals.md), and how the
node opens the catalog: :func:`database.connect` plus the tables, created when missing.
"""

from __future__ import annotations

import database
import indexer
from database import Connection, DialectValues, dialect_of
from node.storage import duties
from node.storage.aes import grant_get_to_movers

__all__ = ["REPORTS_SEARCH", "SCHEMA", "collation_problem", "connect", "ensure_schema"]

#: collations that sort text by code point, as SQLite does (UIDs, names, dates)
_CODE_POINT_COLLATIONS = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    patient_id TEXT, patient_name TEXT, patient_birth_date TEXT, patient_sex TEXT,
    study_date TEXT, study_time TEXT, accession_number TEXT, study_id TEXT,
    study_description TEXT, referring_physician_name TEXT,
    received_at REAL NOT NULL, updated_at REAL NOT NULL, stable_at REAL
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_id);
CREATE INDEX IF NOT EXISTS studies_patient_name ON studies(lower(patient_name));
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(accession_number);
CREATE INDEX IF NOT EXISTS studies_unstable ON studies(updated_at) WHERE stable_at IS NULL;

CREATE TABLE IF NOT EXISTS series (
    series_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL REFERENCES studies(study_instance_uid),
    modality TEXT, series_number TEXT, series_description TEXT,
    body_part_examined TEXT, series_date TEXT, series_time TEXT
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_instance_uid);
CREATE INDEX IF NOT EXISTS series_modality ON series(modality);

CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    series_instance_uid TEXT NOT NULL REFERENCES series(series_instance_uid),
    study_instance_uid TEXT NOT NULL REFERENCES studies(study_instance_uid),
    sop_class_uid TEXT NOT NULL, instance_number TEXT, transfer_syntax_uid TEXT,
    rows INTEGER, columns INTEGER, number_of_frames INTEGER,
    path TEXT NOT NULL, size INTEGER NOT NULL, received_at REAL NOT NULL, source TEXT
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_instance_uid);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_instance_uid);

CREATE TABLE IF NOT EXISTS reports (
    study_instance_uid TEXT PRIMARY KEY,
    text TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '[]', source TEXT NOT NULL,
    sop_instance_uid TEXT, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ae_sources (
    ae_title TEXT PRIMARY KEY, host TEXT, permissions TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ae_destinations (
    ae_title TEXT PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, dicomweb_url TEXT
);
CREATE TABLE IF NOT EXISTS node_config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalog_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL);
"""

#: the reports' full-text search, the one part written per dialect (docs/postgres.md §3):
#: an FTS5 table kept in step by triggers (searched with BM25) on SQLite, a generated
#: ``tsvector`` column with a GIN index (searched with ``ts_rank_cd``) on PostgreSQL;
#: :func:`node.storage.study_reports.search_reports` reads either
REPORTS_SEARCH = {
    DialectValues.SQLITE: """
CREATE VIRTUAL TABLE IF NOT EXISTS reports_fts USING fts5(
    text, content='reports', content_rowid='rowid'
);
CREATE TRIGGER IF NOT EXISTS reports_ai AFTER INSERT ON reports BEGIN
    INSERT INTO reports_fts(rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER IF NOT EXISTS reports_ad AFTER DELETE ON reports BEGIN
    INSERT INTO reports_fts(reports_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER IF NOT EXISTS reports_au AFTER UPDATE ON reports BEGIN
    INSERT INTO reports_fts(reports_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO reports_fts(rowid, text) VALUES (new.rowid, new.text);
END;
""",
    DialectValues.POSTGRESQL: """
ALTER TABLE reports ADD COLUMN IF NOT EXISTS text_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED;
CREATE INDEX IF NOT EXISTS reports_text_tsv ON reports USING GIN (text_tsv);
""",
}


#: columns added after a table was first released: (table, column, SQL type)
_ADDED_COLUMNS = (("ae_destinations", "dicomweb_url", "TEXT"),)


def _add_missing_columns(conn: Connection) -> None:
    """Bring a catalog written by an earlier version up to :data:`SCHEMA`."""
    for table, column, sql_type in _ADDED_COLUMNS:
        cursor = conn.execute(f"SELECT * FROM {table} LIMIT 0")
        if column not in {d[0] for d in cursor.description}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def ensure_schema(conn: Connection) -> None:
    """Create the catalog's tables if missing, and the indexer's (the ingest transaction
    puts each instance on its work queue), each by its owner, and bring an older
    catalog's rows up to date (``catalog_migrations`` says what ran; idempotent)."""
    database.execute_schema(conn, SCHEMA + REPORTS_SEARCH[dialect_of(conn)])
    _add_missing_columns(conn)
    grant_get_to_movers(conn)
    duties.ensure_schema(conn)
    indexer.ensure_schema(conn)


def collation_problem(conn: Connection) -> str | None:
    """What is wrong with the catalog database's text order, in one line (``None`` when
    nothing is): PostgreSQL sorts by the database's collation, and one other than ``C``
    (``en_US`` ignores dots and carets) orders QIDO answers and name ranges differently
    from SQLite."""
    if dialect_of(conn) is DialectValues.SQLITE:
        return None
    row = conn.execute("SELECT datname, datcollate FROM pg_database "
                       "WHERE datname = current_database()").fetchone()
    if row is None or str(row[1]) in _CODE_POINT_COLLATIONS:
        return None
    return (f"the catalog database {row[0]} sorts text by the collation {row[1]}, not by "
            "code point: create it with CREATE DATABASE … TEMPLATE template0 "
            "LC_COLLATE 'C' (README, several machines) so that answers are ordered as on "
            "SQLite")


def connect(catalog: database.Target, *, create_schema: bool = True) -> Connection:
    """Open the catalog (:func:`database.connect`: autocommit, explicit transactions, WAL,
    full sync); the tables are created when missing (pass ``create_schema=False`` where
    they are known to exist, to open faster). Each thread opens its own connection.
    """
    conn = database.connect(catalog)
    if create_schema:
        ensure_schema(conn)
    return conn
