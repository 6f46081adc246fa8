"""The one connect() and transaction() helper, on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

import database
from database import DialectValues, NestedTransaction, ThreadConnections, UnsupportedDatabase


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sub" / "catalog.sqlite"
    conn = database.connect(path)  # the folder is created
    conn.executescript(
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE child (k INTEGER PRIMARY KEY,"
        " parent INTEGER REFERENCES t(k) DEFERRABLE INITIALLY DEFERRED);"
    )
    conn.close()
    return path


def _count(path: Path) -> int:
    other = database.connect(path)
    try:
        return int(other.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        other.close()


def test_connect_opens_durable_autocommit_connections(db: Path) -> None:
    conn = database.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    conn.execute("INSERT INTO t (v) VALUES ('a')")
    assert not conn.in_transaction  # autocommit: nothing left open
    assert _count(db) == 1
    row = conn.execute("SELECT k, v FROM t").fetchone()
    assert row["v"] == row[1] == "a"  # by name and by position
    assert database.dialect_of(conn) is DialectValues.SQLITE


def test_a_transaction_commits_all_or_nothing(db: Path) -> None:
    conn = database.connect(db)
    with database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        conn.execute("INSERT INTO t (v) VALUES ('b')")
        assert _count(db) == 0  # not visible before the commit
    assert _count(db) == 2
    with pytest.raises(sqlite3.IntegrityError), database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('c')")
        conn.execute("INSERT INTO t (v) VALUES (NULL)")  # fails halfway
    assert _count(db) == 2 and not conn.in_transaction


def test_any_exception_rolls_back(db: Path) -> None:
    conn = database.connect(db)
    with pytest.raises(KeyboardInterrupt), database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        raise KeyboardInterrupt
    assert _count(db) == 0 and not conn.in_transaction


def test_a_failed_commit_rolls_back(db: Path) -> None:
    conn = database.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    # the deferred key is checked at COMMIT
    with pytest.raises(sqlite3.IntegrityError), database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        conn.execute("INSERT INTO child (parent) VALUES (999)")
    assert not conn.in_transaction  # not left open for the next caller
    assert _count(db) == 0


def test_transactions_do_not_nest(db: Path) -> None:
    conn = database.connect(db)
    with database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        with pytest.raises(NestedTransaction), database.transaction(conn):
            pass
    assert _count(db) == 1


def test_the_write_lock_is_taken_at_the_start(db: Path) -> None:
    first, second = database.connect(db), database.connect(db)
    second.execute("PRAGMA busy_timeout = 50")
    # nothing written yet, and already the writer
    with database.transaction(first), pytest.raises(sqlite3.OperationalError, match="locked"):
        second.execute("BEGIN IMMEDIATE")
    second.execute("BEGIN IMMEDIATE")
    second.rollback()


def test_targets_of_another_database_are_refused_with_what_to_give() -> None:
    assert database.dialect_for("/var/lib/precedent/catalog.sqlite") is DialectValues.SQLITE
    assert database.dialect_for("sqlite:///var/lib/precedent/c.sqlite") is DialectValues.SQLITE
    assert database.dialect_for("postgresql://db.example/precedent") is DialectValues.POSTGRESQL
    assert database.dialect_for("postgres://db.example/precedent") is DialectValues.POSTGRESQL
    with pytest.raises(UnsupportedDatabase,
                       match="give the path of a SQLite file or a postgresql://"):
        database.connect("mysql://db.example/precedent")
    with pytest.raises(UnsupportedDatabase):
        database.dialect_of(object())


def test_a_sqlite_url_opens_its_file(tmp_path: Path) -> None:
    conn = database.connect(f"sqlite://{tmp_path}/url.sqlite")
    conn.execute("CREATE TABLE x (a)")
    assert (tmp_path / "url.sqlite").exists()


def test_each_thread_gets_its_own_connection_and_the_schema_is_made_once(db: Path) -> None:
    calls: list[int] = []

    def schema(conn: database.Connection) -> None:
        calls.append(1)
        conn.execute("CREATE TABLE IF NOT EXISTS made (a)")

    holder = ThreadConnections(db, schema=schema)
    mine = holder.get()
    assert holder.get() is mine and calls == [1]
    assert mine.execute("SELECT count(*) FROM made").fetchone()[0] == 0
    theirs: list[database.Connection] = []
    thread = threading.Thread(target=lambda: theirs.append(holder.get()))
    thread.start()
    thread.join()
    assert theirs and theirs[0] is not mine
    holder.close()
    assert holder.get() is not mine  # reopened after close
