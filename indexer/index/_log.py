"""How a change of ``vectors`` is made known to the indexes that follow the table.

- SQLite (one process): the catalog *generation* in ``index_meta`` goes up by one per
  changing transaction; a saved index names the generation it reflects, and one of
  another generation is rebuilt.
- PostgreSQL (several processes on one catalog, docs/postgres.md §6): a generation would
  be a row every writer updates, so every vector transaction would collide with every
  other. Instead each changing transaction appends one row per changed key to
  ``vector_changes`` (level, key, its transaction id ``txid``, ``at``). A follower keeps a
  *horizon*: every transaction with an id below it has been applied. In one snapshot it
  reads the oldest transaction still running (``pg_snapshot_xmin``, the new horizon), the
  keys changed by transactions at or above its horizon, and those keys' current rows;
  present → add or replace, absent → remove. A transaction below the new horizon had
  ended when the snapshot was taken, so its rows were seen; one at or above is read again
  next time. Applying reads the current state, so applying twice or out of order is
  harmless. Old rows are pruned (:func:`prune`); an index saved at a horizon below the
  pruned part is rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from database import Connection, DialectValues, dialect_of
from indexer._levels import LevelValues
from indexer.index import _meta

__all__ = ["changed_since", "current_horizon", "follows", "prune", "pruned_below", "record"]

#: ``index_meta`` key: every change log row of a transaction below it was pruned
_PRUNED_BELOW = "changes_pruned_below"
#: an ``xid8`` from a parameter (psycopg sends it as text) and to a Python int
_XID = "CAST(CAST(? AS TEXT) AS xid8)"
_AS_INT = "CAST(CAST({} AS TEXT) AS BIGINT)"


def follows(conn: Connection) -> bool:
    """Whether indexes on this catalog follow the change log (PostgreSQL), rather than a
    generation (SQLite)."""
    return dialect_of(conn) is DialectValues.POSTGRESQL


def record(conn: Connection, upserted: Iterable[tuple[LevelValues, int]],
           removed: Iterable[tuple[LevelValues, int]]) -> int:
    """Make one transaction's change of ``vectors`` known (inside that transaction):
    the generation bumped (SQLite; returns it), or one log row per key (PostgreSQL;
    returns 0)."""
    if not follows(conn):
        return _meta.bump_generation(conn)
    t = time.time()
    keys = sorted({(level.value, int(key)) for level, key in [*upserted, *removed]})
    conn.executemany("INSERT INTO vector_changes (level, key, at) VALUES (?, ?, ?)",
                     [(level, key, t) for level, key in keys])
    return 0


def record_all(conn: Connection) -> None:
    """Log the removal of every vector (before a model change deletes them all)."""
    if follows(conn):
        conn.execute("INSERT INTO vector_changes (level, key, at) SELECT level, key, ?"
                     " FROM vectors", (time.time(),))


def current_horizon(conn: Connection) -> int:
    """The oldest transaction still running (every one below it has ended): where a
    follower's horizon moves to once it has applied what this snapshot shows."""
    row = conn.execute(
        f"SELECT {_AS_INT.format('pg_snapshot_xmin(pg_current_snapshot())')} AS xmin"
    ).fetchone()
    return int(row[0])


def changed_since(conn: Connection, horizon: int) -> list[tuple[LevelValues, int]]:
    """The (level, key) changed by transactions at or above ``horizon``."""
    return [
        (LevelValues(level), int(key))
        for level, key in conn.execute(
            f"SELECT DISTINCT level, key FROM vector_changes WHERE txid >= {_XID}",
            (str(horizon),),
        )
    ]


def pruned_below(conn: Connection) -> int:
    """Every log row of a transaction below this was pruned (0: none was): an index saved
    at a lower horizon cannot be brought up to date from the log."""
    value = _meta.get(conn, _PRUNED_BELOW)
    return 0 if value is None else int(value)


def prune(conn: Connection, *, before: float) -> int:
    """Delete the log rows written before ``before`` (unix seconds), inside the caller's
    transaction, and record how far the log now reaches back. Returns how many rows went
    (0 on SQLite, which keeps no log)."""
    if not follows(conn):
        return 0
    row = conn.execute(
        f"SELECT max({_AS_INT.format('txid')}) AS last FROM vector_changes WHERE at < ?",
        (before,),
    ).fetchone()
    if row is None or row[0] is None:
        return 0
    last = int(row[0])
    gone = conn.execute(f"DELETE FROM vector_changes WHERE txid <= {_XID}",
                        (str(last),)).rowcount
    _meta.put(conn, _PRUNED_BELOW, str(max(last + 1, pruned_below(conn))))
    return gone
