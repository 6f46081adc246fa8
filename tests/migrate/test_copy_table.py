"""``database.copy_table`` and ``database.orphans`` on tables of their own (the tool
knows no table): a SQLite file copied into a real PostgreSQL, resumed after an
interruption, its identities moved on, its orphans found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import database

SCHEMA = """
CREATE TABLE IF NOT EXISTS parent (uid TEXT PRIMARY KEY, n INTEGER, t REAL);
CREATE TABLE IF NOT EXISTS child (
    uid TEXT PRIMARY KEY, parent_uid TEXT NOT NULL REFERENCES parent(uid), data BLOB
);
CREATE TABLE IF NOT EXISTS grandchild (
    uid TEXT PRIMARY KEY, child_uid TEXT NOT NULL REFERENCES child(uid)
);
CREATE TABLE IF NOT EXISTS vec (key INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pair (a INTEGER NOT NULL, b TEXT NOT NULL, note TEXT,
                                 PRIMARY KEY (a, b));
"""
TABLES: list[tuple[str, tuple[str, ...]]] = [
    ("parent", ("uid",)), ("child", ("uid",)), ("grandchild", ("uid",)), ("vec", ("key",)),
    ("pair", ("a", "b")),
]


@pytest.fixture
def src(tmp_path: Path) -> Iterator[database.Connection]:
    """A SQLite catalog with rowid gaps (deleted rows), blobs, floats and NULLs."""
    conn = database.connect(tmp_path / "catalog.sqlite")
    database.execute_schema(conn, SCHEMA)
    with database.transaction(conn):
        for i in range(23):
            conn.execute("INSERT INTO parent VALUES (?, ?, ?)",
                         (f"1.2.{i}", i if i % 5 else None, 1_790_000_000.123456 + i))
            conn.execute("INSERT INTO child VALUES (?, ?, ?)",
                         (f"9.{i}", f"1.2.{i}", bytes(range(i % 7, 40))))
            conn.execute("INSERT INTO grandchild VALUES (?, ?)", (f"7.{i}", f"9.{i}"))
            conn.execute("INSERT INTO vec (v) VALUES (?)", (bytes([i]) * 16,))
            conn.execute("INSERT INTO pair VALUES (?, ?, ?)", (i % 4, f"b{i}", "é\\%_"))
        conn.execute("DELETE FROM parent WHERE uid IN ('1.2.3', '1.2.4')")
        conn.execute("DELETE FROM child WHERE uid IN ('9.3', '9.4')")
        conn.execute("DELETE FROM grandchild WHERE uid IN ('7.3', '7.4')")
        conn.execute("DELETE FROM vec WHERE key IN (2, 23)")  # the last one too
    yield conn
    conn.close()


@pytest.fixture
def dst(postgres_url: str) -> Iterator[database.Connection]:
    conn = database.connect(postgres_url)
    database.execute_schema(conn, SCHEMA)
    database.ensure_progress(conn)
    yield conn
    conn.close()


def source_rows(conn: database.Connection, table: str,
                key: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(
        f"SELECT rowid AS r, * FROM {table} ORDER BY {', '.join(key)}").fetchall()]


def target_rows(conn: database.Connection, table: str,
                key: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The target's rows in the source's column order, its ``rowid`` first."""
    names = [r[1] for r in conn.execute(  # the source's order is the schema's
        "SELECT ordinal_position, column_name FROM information_schema.columns WHERE"
        " table_name = ? AND column_name <> 'rowid' ORDER BY ordinal_position", (table,))]
    return [tuple(r) for r in conn.execute(
        f"SELECT rowid, {', '.join(names)} FROM {table} ORDER BY {', '.join(key)}")]


def test_copies_every_row_with_its_rowid_and_keys(src: database.Connection,
                                                  dst: database.Connection) -> None:
    for table, key in TABLES:
        copied = database.copy_table(src, dst, table, key, 4, source="here")
        assert copied == database.count_rows(src, table)
        assert target_rows(dst, table, key) == source_rows(src, table, key)
    progress = database.progress_of(dst)
    assert set(progress) == {t for t, _ in TABLES}
    assert all(p.finished_at is not None and p.source == "here" for p in progress.values())
    assert progress["pair"].last_key == (3, "b7")  # the composite key's last value


def test_identities_continue_after_the_largest_copied(src: database.Connection,
                                                      dst: database.Connection) -> None:
    database.copy_table(src, dst, "vec", ("key",), 5)
    largest = int(src.execute("SELECT max(key) FROM vec").fetchone()[0])
    largest_rowid = largest  # vec.key is the SQLite rowid
    new = dst.execute("INSERT INTO vec (v) VALUES (?) RETURNING key, rowid",
                      (b"\x01" * 16,)).fetchone()
    assert (new[0], new[1]) == (largest + 1, largest_rowid + 1)
    database.copy_table(src, dst, "parent", ("uid",), 5)
    top = int(src.execute("SELECT max(rowid) FROM parent").fetchone()[0])
    made = dst.execute("INSERT INTO parent (uid) VALUES ('x') RETURNING rowid").fetchone()
    assert made[0] == top + 1


class Interrupt(Exception):
    pass


def test_an_interrupted_copy_resumes_where_it_stopped(src: database.Connection,
                                                      dst: database.Connection) -> None:
    batches: list[int] = []

    def stop_after_two(n: int) -> None:
        batches.append(n)
        if len(batches) == 2:
            raise Interrupt

    database.copy_table(src, dst, "parent", ("uid",), 100)
    with pytest.raises(Interrupt):
        database.copy_table(src, dst, "child", ("uid",), 5, on_batch=stop_after_two)
    assert database.count_rows(dst, "child") == 10  # two batches committed, no more
    stopped = database.progress_of(dst)["child"]
    assert stopped.finished_at is None and stopped.copied == 10
    assert stopped.last_key == (source_rows(src, "child", ("uid",))[9][1],)
    seen: list[int] = []
    assert database.copy_table(src, dst, "child", ("uid",), 5, on_batch=seen.append) == 11
    assert seen == [5, 5, 1]
    assert target_rows(dst, "child", ("uid",)) == source_rows(src, "child", ("uid",))
    assert database.copy_table(src, dst, "child", ("uid",), 5) == 0  # finished: nothing


def test_orphans_and_the_rows_under_them(src: database.Connection,
                                         dst: database.Connection) -> None:
    src.execute("DELETE FROM parent WHERE uid = '1.2.7'")  # child 9.7 orphaned, 7.7 under it
    found = database.orphans(src, [t for t, _ in TABLES])
    assert [(o.table, o.column, o.parent, o.under, len(o.rowids)) for o in found] == [
        ("child", "parent_uid", "parent", False, 1),
        ("grandchild", "child_uid", "child", True, 1),
    ]
    for table, key in TABLES:
        skip = set().union(*(o.rowids for o in found if o.table == table))
        database.copy_table(src, dst, table, key, 4, skip=skip)
    assert database.count_rows(dst, "child") == database.count_rows(src, "child") - 1
    assert dst.execute("SELECT count(*) FROM grandchild WHERE uid = '7.7'").fetchone()[0] == 0


def test_an_orphan_not_left_out_is_refused_by_postgresql(src: database.Connection,
                                                        dst: database.Connection) -> None:
    src.execute("DELETE FROM parent WHERE uid = '1.2.7'")
    database.copy_table(src, dst, "parent", ("uid",), 100)
    with pytest.raises(database.CopyError, match=r"child: the rows up to key 9\.9 could not be written"):
        database.copy_table(src, dst, "child", ("uid",), 100)
    assert database.count_rows(dst, "child") == 0  # the batch was rolled back whole


def test_a_target_without_a_column_is_refused(src: database.Connection,
                                              dst: database.Connection) -> None:
    src.execute("ALTER TABLE pair ADD COLUMN extra TEXT")
    with pytest.raises(database.CopyError, match="pair has no column extra"):
        database.copy_table(src, dst, "pair", ("a", "b"), 10)


def test_source_tables_leave_out_sqlite_s_own_and_full_text(src: database.Connection) -> None:
    src.executescript("CREATE VIRTUAL TABLE IF NOT EXISTS notes_fts USING fts5(text);")
    names = database.source_tables(src)
    every = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sqlite_sequence", "notes_fts", "notes_fts_data", "notes_fts_config"} <= every
    assert [n for n in names if n.startswith(("sqlite_", "notes_fts"))] == []
    assert sorted(names) == sorted(t for t, _ in TABLES)


def test_rows_without_a_key_are_found_and_never_copied(src: database.Connection,
                                                       dst: database.Connection) -> None:
    src.execute("INSERT INTO parent (uid, n) VALUES (NULL, 1)")  # SQLite allows it
    found = database.keyless(src, "parent", ("uid",))
    assert found is not None and len(found.rowids) == 1 and found.parent == ""
    assert database.keyless(src, "child", ("uid",)) is None
    assert database.copy_table(src, dst, "parent", ("uid",), 2) == 21
    assert database.count_rows(src, "parent") == 22


def test_one_copy_into_a_target_at_a_time(dst: database.Connection, postgres_url: str) -> None:
    assert database.lock_target(dst)
    other = database.connect(postgres_url)
    try:
        assert not database.lock_target(other)
        dst.execute("SELECT pg_advisory_unlock_all()")  # as when its session ends
        assert database.lock_target(other)
    finally:
        other.close()
