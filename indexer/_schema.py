"""The indexer's tables in the catalog (``work``, ``vectors``, ``index_meta``).

See docs/internals.md. Created by :func:`indexer.queue.ensure_schema`.
"""

from __future__ import annotations

__all__ = ["SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS work (
    sop_instance_uid TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'in_progress', 'done', 'skipped', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    not_before REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS work_state ON work (state, not_before);

CREATE TABLE IF NOT EXISTS vectors (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    level TEXT NOT NULL CHECK (level IN ('study', 'series', 'instance')),
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
