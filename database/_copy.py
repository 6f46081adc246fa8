"""Copying a SQLite catalog's tables into a PostgreSQL one, table by table, resumably:
the tool under ``precedent catalog migrate`` (docs/postgres.md §9). It knows no table:
the packages that own tables name them and their keys, parents first.

- :func:`copy_table` reads the source in key order, ``batch`` rows at a time (``WHERE
  (key) > (last)``), writes each batch into the target with ``COPY``, keeping SQLite's
  ``rowid`` in the target's ``rowid`` column (and every other column as it is: the
  vectors' keys, which the usearch files name), and records how far it got in
  ``migration_progress`` in the same target transaction: a crash or Ctrl-C resumes at
  the first batch not committed. A finished table's identity sequences are set past
  the largest value copied (a written value does not move them).
- :func:`orphans` finds the source's rows whose parent is missing (SQLite does not
  enforce ``REFERENCES`` unless asked; PostgreSQL always does), and the rows under them.
  :func:`keyless` finds rows with no key (never copied).
- :func:`source_tables`, :func:`count_rows`, :func:`progress_of`: what there is to copy
  and how far it went; :func:`lock_target`: one copy into a target at a time.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from database._connect import CatalogConnection
from database._dialect import IsolationValues
from database._postgres import PostgresConnection
from database._transaction import transaction

__all__ = [
    "MIGRATION_LOCK_KEY", "PROGRESS_TABLE", "CopyError", "Orphan", "TableProgress",
    "copy_table", "count_rows", "ensure_progress", "keyless", "lock_target", "orphans",
    "progress_of", "source_tables",
]

#: the advisory lock a copy holds on its target ("preced" + 2; the schema's is + 1)
MIGRATION_LOCK_KEY = 0x7072656365640002
#: the target's table that records each table's progress
PROGRESS_TABLE = "migration_progress"
_PROGRESS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
    table_name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    last_key TEXT,
    copied BIGINT NOT NULL DEFAULT 0,
    finished_at DOUBLE PRECISION
)"""

#: the tables an FTS3/4/5 virtual table keeps its index in (``<name>_<part>``)
_SHADOW_TABLES = ("data", "idx", "content", "docsize", "config", "segments", "segdir", "stat")


class CopyError(RuntimeError):
    """A table cannot be copied as it is (a column the target lacks, a value it refuses)."""


@dataclasses.dataclass(frozen=True)
class TableProgress:
    """How far a table's copy went: the source it came from, the last key committed (as
    a list of the key's values), the rows copied, and when it finished (None: not yet)."""

    table: str
    source: str
    last_key: tuple[Any, ...] | None
    copied: int
    finished_at: float | None


@dataclasses.dataclass(frozen=True)
class Orphan:
    """Rows of ``table`` whose ``column`` names a ``parent`` row that is missing, or that
    is itself an orphan (``under`` says so then), or (``parent`` empty) that have no
    value in their key ``column`` (:func:`keyless`); ``rowids`` are SQLite's."""

    table: str
    column: str
    parent: str
    rowids: frozenset[int]
    under: bool = False


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _postgres(dst: CatalogConnection) -> PostgresConnection:
    if not isinstance(dst, PostgresConnection):
        raise TypeError("the target of a catalog copy must be a PostgreSQL connection")
    return dst


def _sqlite(src: CatalogConnection) -> sqlite3.Connection:
    if not isinstance(src, sqlite3.Connection):
        raise TypeError("the source of a catalog copy must be a SQLite connection")
    return src


def ensure_progress(dst: CatalogConnection, source: str = "",
                    tables: Collection[str] = ()) -> None:
    """Create the target's ``migration_progress`` table when missing, and a row for each
    of ``tables`` not yet there (a copy from ``source`` not begun): from then on the
    target counts as one this source is being migrated into."""
    pg = _postgres(dst)
    pg.execute(_PROGRESS_SCHEMA)
    if tables:
        pg.executemany(f"INSERT INTO {PROGRESS_TABLE} (table_name, source) VALUES (?, ?)"
                       " ON CONFLICT (table_name) DO NOTHING", [(t, source) for t in tables])


def progress_of(dst: CatalogConnection) -> dict[str, TableProgress]:
    """Every table's progress recorded in the target (nothing when none was)."""
    found = dst.execute(
        "SELECT 1 AS found FROM information_schema.tables WHERE table_schema = current_schema()"
        " AND table_name = ?", (PROGRESS_TABLE,)).fetchone()
    if found is None:
        return {}
    rows = dst.execute(f"SELECT table_name, source, last_key, copied, finished_at "
                       f"FROM {PROGRESS_TABLE}").fetchall()
    return {
        str(r[0]): TableProgress(str(r[0]), str(r[1]),
                                 None if r[2] is None else tuple(json.loads(r[2])),
                                 int(r[3]), None if r[4] is None else float(r[4]))
        for r in rows
    }


def count_rows(conn: CatalogConnection, table: str) -> int:
    """How many rows ``table`` holds."""
    return int(conn.execute(f"SELECT count(*) AS n FROM {_quote(table)}").fetchone()[0])


def source_tables(src: CatalogConnection) -> list[str]:
    """The SQLite catalog's ordinary tables: not SQLite's own (``sqlite_sequence``,
    ``sqlite_stat1``), not a virtual table (FTS5) nor the shadow tables it keeps."""
    rows = _sqlite(src).execute(
        "SELECT name, type, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ).fetchall()
    virtual = [str(r[0]) for r in rows if str(r[2] or "").upper().startswith("CREATE VIRTUAL")]
    shadows = {f"{v}_{part}" for v in virtual for part in _SHADOW_TABLES}
    return [str(r[0]) for r in rows if not str(r[0]).startswith("sqlite_")
            and str(r[0]) not in virtual and str(r[0]) not in shadows]


def _columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in src.execute(f"PRAGMA table_info({_quote(table)})")]


def _target_columns(dst: PostgresConnection, table: str) -> set[str]:
    """The target's columns a value may be written to (generated ones are not)."""
    rows = dst.execute(
        "SELECT column_name, is_generated FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?", (table,)).fetchall()
    return {str(r[0]) for r in rows if str(r[1]) == "NEVER"}


def _identities(dst: PostgresConnection, table: str) -> list[str]:
    rows = dst.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = ? AND is_identity = 'YES'", (table,)).fetchall()
    return [str(r[0]) for r in rows]


def _set_identities(dst: PostgresConnection, table: str) -> None:
    """Move ``table``'s identity sequences past the largest value it holds, so that the
    next row without one gets a new value (one written explicitly does not move them)."""
    for column in _identities(dst, table):
        dst.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), coalesce(max({_quote(column)}), 0)"
            f" + 1, false) FROM {_quote(table)}", (_quote(table), column))


def copy_table(
    src: CatalogConnection, dst: CatalogConnection, table: str, key: Sequence[str],
    batch: int = 5000, *, source: str = "", skip: Collection[int] = (),
    on_batch: Callable[[int], object] | None = None,
) -> int:
    """Copy ``table`` from the SQLite catalog ``src`` into the PostgreSQL catalog
    ``dst`` (whose tables exist), from where an earlier run stopped; returns the rows
    copied by this run (0 for a table already finished).

    ``key`` names the columns of a unique key (``NOT NULL``): the source is read in its
    order, ``batch`` rows at a time. ``source`` names the source in the progress rows;
    ``skip`` holds SQLite rowids not to copy (orphans left out). ``on_batch(n)`` is
    called after each committed batch of ``n`` rows read (a progress bar; an exception
    there stops the copy between two batches, as Ctrl-C would).

    The target's table belongs to the copy until it finishes: what it held before the
    copy began (rows its schema's creation wrote, such as a record of a data migration
    run there) is deleted in the first batch's transaction, so that it ends holding
    exactly the source's rows. The caller makes sure the target held no data of its own.
    """
    lite, pg = _sqlite(src), _postgres(dst)
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if not key:
        raise ValueError(f"{table}: a key of at least one column is needed")
    done = progress_of(pg).get(table)
    if done is not None and done.finished_at is not None:
        return 0
    columns = _columns(lite, table)
    if not columns:
        raise CopyError(f"the source has no table {table}")
    missing = [c for c in ["rowid", *columns] if c not in _target_columns(pg, table)]
    if missing:
        raise CopyError(f"the target's {table} has no column {', '.join(missing)}: its "
                        "schema is not this version's")
    positions = [columns.index(k) + 1 for k in key]  # + 1: the rowid comes first
    listed = ", ".join(_quote(c) for c in columns)
    order = ", ".join(_quote(k) for k in key)
    keyed = " AND ".join(f"{_quote(k)} IS NOT NULL" for k in key)  # see keyless()
    first = (f"SELECT rowid, {listed} FROM {_quote(table)} WHERE {keyed} ORDER BY {order}"
             " LIMIT ?")
    after = (f"SELECT rowid, {listed} FROM {_quote(table)} WHERE {keyed} AND ({order}) > "
             f"({', '.join('?' for _ in key)}) ORDER BY {order} LIMIT ?")
    into = f"COPY {_quote(table)} (rowid, {listed}) FROM STDIN"
    # not begun: emptied in its first transaction (see above)
    fresh = done is None or done.last_key is None
    last = done.last_key if done is not None else None
    copied_before = done.copied if done is not None else 0
    copied = 0
    while True:
        rows = (lite.execute(first, (batch,)) if last is None
                else lite.execute(after, (*last, batch))).fetchall()
        if not rows:
            break
        kept = [tuple(r) for r in rows if r[0] not in skip]
        last = tuple(rows[-1][p] for p in positions)
        try:
            with transaction(pg, isolation=IsolationValues.READ_COMMITTED):
                if fresh:
                    pg.execute(f"DELETE FROM {_quote(table)}")
                    fresh = False
                if kept:
                    with pg.raw.cursor().copy(into) as stream:
                        for row in kept:
                            stream.write_row(row)
                _record(pg, table, source, last, copied_before + copied + len(kept), None)
        except Exception as exc:
            raise CopyError(f"{table}: the rows up to key {_shown(last)} could not be "
                            f"written ({' '.join(str(exc).split())})") from exc
        copied += len(kept)
        if on_batch is not None:
            on_batch(len(rows))
        if len(rows) < batch:
            break
    with transaction(pg, isolation=IsolationValues.READ_COMMITTED):
        if fresh:
            pg.execute(f"DELETE FROM {_quote(table)}")
        _set_identities(pg, table)
        _record(pg, table, source, last, copied_before + copied, time.time())
    return copied


def keyless(src: CatalogConnection, table: str, key: Sequence[str]) -> Orphan | None:
    """The rows of ``table`` with no value in a column of ``key`` (SQLite lets a
    ``PRIMARY KEY`` that is not an integer hold NULL; PostgreSQL does not): never copied
    by :func:`copy_table`, so its caller says what becomes of them."""
    rowids = frozenset(int(r[0]) for r in _sqlite(src).execute(
        f"SELECT rowid FROM {_quote(table)} WHERE "
        + " OR ".join(f"{_quote(k)} IS NULL" for k in key)))
    return Orphan(table, ", ".join(key), "", rowids) if rowids else None


def lock_target(dst: CatalogConnection) -> bool:
    """Take the target's migration lock (a PostgreSQL advisory lock held by this
    session until it closes): False when another copy holds it."""
    row = _postgres(dst).execute("SELECT pg_try_advisory_lock(?) AS held",
                                 (MIGRATION_LOCK_KEY,)).fetchone()
    return row is not None and bool(row[0])


def _shown(key: tuple[Any, ...] | None) -> str:
    return "(start)" if key is None else ", ".join(map(str, key))


def _record(dst: PostgresConnection, table: str, source: str, last: tuple[Any, ...] | None,
            copied: int, finished_at: float | None) -> None:
    dst.execute(
        f"INSERT INTO {PROGRESS_TABLE} (table_name, source, last_key, copied, finished_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (table_name) DO UPDATE SET"
        " last_key = excluded.last_key, copied = excluded.copied,"
        " finished_at = excluded.finished_at",
        (table, source, None if last is None else json.dumps(list(last)), copied,
         finished_at))


def _foreign_keys(src: sqlite3.Connection, table: str) -> dict[int, tuple[str, list[str],
                                                                           list[str]]]:
    """``table``'s foreign keys: id → (parent table, its columns here, the parent's)."""
    keys: dict[int, tuple[str, list[str], list[str]]] = {}
    for row in src.execute(f"PRAGMA foreign_key_list({_quote(table)})"):
        _, cols, pcols = keys.setdefault(int(row[0]), (str(row[2]), [], []))
        cols.append(str(row[3]))
        pcols.append(str(row[4]))
    return keys


def orphans(src: CatalogConnection, tables: Collection[str]) -> list[Orphan]:
    """The rows of ``tables`` (in the SQLite catalog ``src``) that PostgreSQL would
    refuse for a missing parent row, one :class:`Orphan` per table and reference; then
    the rows under them (whose parent is such an orphan), which would be refused once
    their parent is left out."""
    lite = _sqlite(src)
    found: dict[tuple[str, int], set[int]] = {}
    for row in lite.execute("PRAGMA foreign_key_check"):
        if str(row[0]) in tables and row[1] is not None:
            found.setdefault((str(row[0]), int(row[3])), set()).add(int(row[1]))
    out = [Orphan(t, ", ".join(_foreign_keys(lite, t)[fk][1]), _foreign_keys(lite, t)[fk][0],
                  frozenset(ids)) for (t, fk), ids in sorted(found.items())]
    dropped: dict[str, set[int]] = {}
    for o in out:
        dropped.setdefault(o.table, set()).update(o.rowids)
    fresh = {t: set(ids) for t, ids in dropped.items()}
    while fresh:  # the rows under those left out, level by level
        newer: dict[str, set[int]] = {}
        for table in tables:
            for parent, cols, pcols in _foreign_keys(lite, table).values():
                ids = sorted(fresh.get(parent, ()))
                if not ids:
                    continue
                under: set[int] = set()
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    under.update(int(r[0]) for r in lite.execute(
                        f"SELECT rowid FROM {_quote(table)} WHERE ({', '.join(map(_quote, cols))})"
                        f" IN (SELECT {', '.join(map(_quote, pcols))} FROM {_quote(parent)}"
                        f" WHERE rowid IN ({', '.join('?' for _ in chunk)}))", chunk))
                under -= dropped.get(table, set())
                if under:
                    out.append(Orphan(table, ", ".join(cols), parent, frozenset(under), True))
                    dropped.setdefault(table, set()).update(under)
                    newer.setdefault(table, set()).update(under)
        fresh = newer
    return out
