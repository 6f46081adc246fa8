"""The same catalog behaviour on SQLite and on a real PostgreSQL: autocommit connections,
rows by position and by name, ``?`` parameters, all-or-nothing transactions, the
packages' schema scripts, and the values read back as the packages wrote them."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import pytest

import database
from database import DialectValues, IsolationValues, NestedTransaction
from indexer._schema import SCHEMA as INDEXER_SCHEMA
from node.storage._schema import REPORTS_SEARCH
from node.storage._schema import SCHEMA as STORAGE_TABLES

#: the node's catalog as SQLite has it, FTS5 included
STORAGE_SCHEMA = STORAGE_TABLES + REPORTS_SEARCH[DialectValues.SQLITE]

Connect = Callable[[], database.Connection]

TABLES = """
CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL, at REAL, data BLOB);
CREATE TABLE IF NOT EXISTS child (k INTEGER PRIMARY KEY,
    parent INTEGER REFERENCES t(k) DEFERRABLE INITIALLY DEFERRED);
"""


@pytest.fixture
def conn(connect: Connect) -> database.Connection:
    first = connect()
    database.execute_schema(first, TABLES)
    if database.dialect_of(first) is DialectValues.SQLITE:
        first.execute("PRAGMA foreign_keys = ON")  # PostgreSQL always checks them
    return first


def _count(connect: Connect) -> int:
    return int(connect().execute("SELECT count(*) FROM t").fetchone()[0])


def test_the_dialect_is_known_from_the_target_and_the_connection(target: str,
                                                                 conn: database.Connection) -> None:
    dialect = database.dialect_for(target)
    assert database.dialect_of(conn) is dialect
    assert dialect.placeholder == "?"
    assert isinstance(conn, database.PostgresConnection) == (dialect is DialectValues.POSTGRESQL)


def test_statements_outside_a_transaction_commit_at_once(conn: database.Connection,
                                                        connect: Connect) -> None:
    conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (1, "a"))
    assert not conn.in_transaction
    assert _count(connect) == 1  # seen by another connection: committed


def test_rows_read_by_position_by_name_and_as_a_whole(conn: database.Connection) -> None:
    conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (7, "seven"))
    row = conn.execute("SELECT k, v AS Name FROM t").fetchone()
    assert row[0] == row["k"] == row["K"] == 7  # names ASCII case-insensitive, as sqlite3
    assert row[1] == row["name"] == row["NAME"] == "seven"
    assert tuple(row) == (7, "seven") and len(row) == 2
    key, value = row
    assert (key, value) == (7, "seven")
    assert row[0:2] == (7, "seven")
    names = row.keys()  # the names, where iterating the row gives the values
    assert [k.lower() for k in names] == ["k", "name"]
    assert {k.lower(): v for k, v in dict(row).items()} == {"k": 7, "name": "seven"}
    with pytest.raises(IndexError):
        row["missing"]
    assert conn.execute("SELECT v FROM t WHERE k = ?", (8,)).fetchone() is None


def test_question_marks_in_literals_and_percent_signs_are_text(conn: database.Connection) -> None:
    conn.execute("INSERT INTO t (k, v) VALUES (?, '100% sure? yes')", (1,))
    conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (2, "50% ?"))
    rows = conn.execute(
        "SELECT v FROM t WHERE v LIKE '%?%' AND k >= ? -- a comment? 5%\n ORDER BY k", (1,)
    ).fetchall()
    assert [r[0] for r in rows] == ["100% sure? yes", "50% ?"]
    assert conn.execute("SELECT '?', 'it''s ?', ?", ("x",)).fetchone()[:] == ("?", "it's ?", "x")


def test_values_come_back_as_written(conn: database.Connection) -> None:
    blob = struct.pack("<4f", 0.25, -1.0, math.pi, 1e-8)
    at = 1_767_225_600.123456  # a unix time: PostgreSQL's REAL would lose minutes
    conn.execute("INSERT INTO t (k, v, at, data) VALUES (?, ?, ?, ?)", (2**40, "big", at, blob))
    row = conn.execute("SELECT k, at, data FROM t").fetchone()
    assert row["k"] == 2**40 and isinstance(row["k"], int)  # 64-bit integers
    assert row["at"] == at
    assert bytes(row["data"]) == blob and isinstance(row["data"], bytes)
    conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (3, "x"))
    sums = conn.execute("SELECT sum(k), count(*), avg(k), max(k) FROM t").fetchone()
    assert sums[0] == 2**40 + 3 and isinstance(sums[0], int)  # not a Decimal
    assert sums[1] == 2 and isinstance(sums[1], int)
    assert sums[2] == pytest.approx((2**40 + 3) / 2) and isinstance(sums[2], float)
    assert conn.execute("SELECT v FROM t WHERE at IS NULL").fetchone()[0] == "x"


def test_upserts_and_returning_are_one_form_for_both(conn: database.Connection) -> None:
    upsert = ("INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
              " RETURNING k, v")
    assert tuple(conn.execute(upsert, (1, "a")).fetchone()) == (1, "a")
    assert tuple(conn.execute(upsert, (1, "b")).fetchone()) == (1, "b")
    conn.execute("INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING", (1, "c"))
    assert conn.execute("SELECT v FROM t").fetchall()[0][0] == "b"
    cur = conn.execute("UPDATE t SET v = ? WHERE k = ?", ("d", 1))
    assert cur.rowcount == 1
    assert conn.execute("DELETE FROM t WHERE k = ?", (99,)).rowcount == 0


def test_executemany_and_fetchmany(conn: database.Connection) -> None:
    conn.executemany("INSERT INTO t (k, v) VALUES (?, ?)", [(i, f"v{i}") for i in range(10)])
    cur = conn.execute("SELECT k FROM t ORDER BY k")
    assert [r[0] for r in cur.fetchmany(4)] == [0, 1, 2, 3]
    assert [r[0] for r in cur.fetchmany(4)] == [4, 5, 6, 7]
    assert [r[0] for r in cur] == [8, 9]


def test_a_transaction_commits_all_or_nothing(conn: database.Connection, connect: Connect) -> None:
    with database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        conn.execute("INSERT INTO t (v) VALUES ('b')")
        assert conn.in_transaction
        assert _count(connect) == 0  # not visible before the commit
    assert _count(connect) == 2 and not conn.in_transaction
    with pytest.raises(database.IntegrityError), database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('c')")
        conn.execute("INSERT INTO t (v) VALUES (NULL)")  # fails halfway
    assert _count(connect) == 2 and not conn.in_transaction
    conn.execute("INSERT INTO t (v) VALUES ('usable after the failure')")
    assert _count(connect) == 3


@pytest.mark.parametrize("isolation", list(IsolationValues))
def test_any_exception_rolls_back_at_any_isolation(conn: database.Connection, connect: Connect,
                                                   isolation: IsolationValues) -> None:
    with pytest.raises(KeyboardInterrupt), database.transaction(conn, isolation=isolation):
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        raise KeyboardInterrupt
    assert _count(connect) == 0 and not conn.in_transaction


def test_a_failed_commit_rolls_back(conn: database.Connection, connect: Connect) -> None:
    # the deferred key is checked at COMMIT
    with pytest.raises(database.IntegrityError), database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        conn.execute("INSERT INTO child (parent) VALUES (999)")
    assert not conn.in_transaction  # not left open for the next caller
    assert _count(connect) == 0


def test_transactions_do_not_nest(conn: database.Connection, connect: Connect) -> None:
    with database.transaction(conn):
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        with pytest.raises(NestedTransaction), database.transaction(conn):
            pass
    assert _count(connect) == 1


def test_the_packages_schemas_are_created_on_both_and_twice_is_harmless(
        connect: Connect) -> None:
    conn = connect()
    for _ in range(2):
        database.execute_schema(conn, INDEXER_SCHEMA)
    conn.execute(
        "INSERT INTO vectors (level, uid, study_instance_uid, model_id, vector)"
        " VALUES ('instance', '1.2', '1', 'm', ?)", (b"\x00\x01",))
    again = ("INSERT INTO vectors (level, uid, study_instance_uid, model_id, vector)"
             " VALUES ('instance', ?, '1', 'm', ?) RETURNING key")
    first = conn.execute(again, ("1.3", b"")).fetchone()[0]
    conn.execute("DELETE FROM vectors WHERE key = ?", (first,))
    # keys are never reused (usearch keys must not come back): AUTOINCREMENT / identity
    assert conn.execute(again, ("1.4", b"")).fetchone()[0] == first + 1
    with pytest.raises(database.IntegrityError):  # the CHECK on the level holds
        conn.execute("INSERT INTO vectors (level, uid, study_instance_uid, model_id, vector)"
                     " VALUES ('frame', '9', '1', 'm', ?)", (b"",))


def test_a_sqlite_only_table_is_refused_on_postgresql_with_what_to_do(target: str,
                                                                     connect: Connect) -> None:
    conn = connect()
    if database.dialect_for(target) is DialectValues.SQLITE:
        database.execute_schema(conn, STORAGE_SCHEMA)  # FTS5 is fine here
        return
    with pytest.raises(database.UntranslatableSchema,
                       match="VIRTUAL TABLE is SQLite only: write this part of the schema"):
        database.execute_schema(conn, STORAGE_SCHEMA)
    assert not conn.in_transaction
    # refused before any of it ran
    assert conn.execute("SELECT to_regclass('studies')").fetchone()[0] is None
