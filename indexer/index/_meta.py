"""The ``index_meta`` table: which model the vectors belong to (identity, dimension), the
catalog *generation*, bumped by every transaction that changes ``vectors`` on SQLite, and
on PostgreSQL how far back the change log reaches (:mod:`indexer.index._log`).

A saved usearch file names the generation it reflects; one of an older generation is
stale and rebuilt from the table.
"""

from __future__ import annotations

from database import Connection

__all__ = ["bind_model", "bump_generation", "generation", "get", "model_dim", "model_identity",
           "put"]

_MODEL = "model_id"
_DIM = "dim"
_GENERATION = "generation"


def get(conn: Connection, key: str) -> str | None:
    """The value of ``key``; None when it has none."""
    row = conn.execute("SELECT value FROM index_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def put(conn: Connection, key: str, value: str) -> None:
    """Set ``key`` (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO index_meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


_get = get


def model_identity(conn: Connection) -> str | None:
    """The identity of the model the vectors belong to; None while nothing is bound."""
    return _get(conn, _MODEL)


def model_dim(conn: Connection) -> int | None:
    """The dimension of the bound model's vectors; None while nothing is bound."""
    value = _get(conn, _DIM)
    return None if value is None else int(value)


def generation(conn: Connection) -> int:
    """How many transactions have changed ``vectors`` (0 for a new catalog; always 0 on
    PostgreSQL, whose indexes follow the change log instead)."""
    value = _get(conn, _GENERATION)
    return 0 if value is None else int(value)


def bind_model(conn: Connection, identity: str, dim: int) -> None:
    """Record the model the vectors belong to (inside the caller's transaction)."""
    conn.executemany(
        "INSERT INTO index_meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [(_MODEL, identity), (_DIM, str(dim))],
    )


def bump_generation(conn: Connection) -> int:
    """Count one more change of ``vectors`` (inside the caller's transaction); returns the
    new generation."""
    row = conn.execute(
        "INSERT INTO index_meta (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE"
        " SET value = CAST(CAST(index_meta.value AS INTEGER) + 1 AS TEXT) RETURNING value",
        (_GENERATION,),
    ).fetchone()
    return int(row[0])
