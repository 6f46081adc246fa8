"""What only the PostgreSQL connection has to do: reach a server or say in one line why
not (never showing the password), keep commits durable whatever the server's default,
come back after the server dropped it, and let processes create the schema together."""

from __future__ import annotations

import threading

import psycopg
import pytest

import database
from database import CatalogUnavailable, ThreadConnections
from indexer._schema import SCHEMA as INDEXER_SCHEMA
from tests._peers import free_port
from tests._postgres import PostgresServer


def _terminate(server: PostgresServer, conn: database.Connection) -> None:
    """End ``conn``'s session from the server side, as a restart or failover would."""
    assert isinstance(conn, database.PostgresConnection)
    pid = conn.raw.info.backend_pid
    with psycopg.connect(server.url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def test_an_unreachable_server_is_one_line_naming_it_without_the_password() -> None:
    url = f"postgresql://precedent:s3cret@127.0.0.1:{free_port()}/catalog"
    with pytest.raises(CatalogUnavailable) as caught:
        database.connect(url)
    message = str(caught.value)
    assert "\n" not in message and "s3cret" not in message
    assert message.startswith("cannot open the catalog postgresql://precedent:***@127.0.0.1:")
    assert "check [catalog] url" in message
    assert isinstance(caught.value, database.DatabaseError)


def test_a_malformed_url_says_how_to_write_it() -> None:
    for url in ("postgresql://u:s3cret@h/db?bogus=1", "postgresql://u:s3cret@[::1/db"):
        with pytest.raises(CatalogUnavailable,
                           match="write it as postgresql://user:password@host") as caught:
            database.connect(url)
        assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)
    assert database.redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert database.redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_commits_are_durable_even_where_the_server_says_otherwise(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as raw:  # the test cluster runs with it off
        assert raw.execute("SHOW synchronous_commit").fetchone() == ("off",)
    conn = database.connect(postgres_url)
    assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    assert conn.execute("SHOW application_name").fetchone()[0] == "precedent"


def test_what_the_url_says_wins_over_the_defaults(postgres_url: str) -> None:
    conn = database.connect(postgres_url + "?application_name=site-a")
    assert conn.execute("SHOW application_name").fetchone()[0] == "site-a"


def test_a_dropped_connection_is_opened_again_before_the_next_transaction(
        postgres_server: PostgresServer, postgres_url: str) -> None:
    conn = database.connect(postgres_url)
    conn.execute("CREATE TABLE t (v TEXT)")
    _terminate(postgres_server, conn)
    with pytest.raises(psycopg.OperationalError):  # this one is lost, and said so
        conn.execute("INSERT INTO t VALUES ('lost')")
    assert database.is_broken(conn)
    with database.transaction(conn):
        conn.execute("INSERT INTO t VALUES ('kept')")
    assert not database.is_broken(conn)
    assert [r[0] for r in conn.execute("SELECT v FROM t")] == ["kept"]


def test_a_connection_dropped_inside_a_transaction_fails_it(
        postgres_server: PostgresServer, postgres_url: str) -> None:
    conn = database.connect(postgres_url)
    conn.execute("CREATE TABLE t (v TEXT)")
    with pytest.raises(psycopg.OperationalError), database.transaction(conn):
        conn.execute("INSERT INTO t VALUES ('half')")
        _terminate(postgres_server, conn)
        conn.execute("INSERT INTO t VALUES ('never')")
    with database.transaction(conn):  # renewed; nothing of the failed one was kept
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def test_each_thread_gets_a_connection_again_after_the_server_dropped_it(
        postgres_server: PostgresServer, postgres_url: str) -> None:
    holder = ThreadConnections(postgres_url)
    mine = holder.get()
    assert holder.get() is mine
    _terminate(postgres_server, mine)
    with pytest.raises(psycopg.OperationalError):
        mine.execute("SELECT 1")
    fresh = holder.get()
    assert fresh is not mine and fresh.execute("SELECT 1").fetchone()[0] == 1
    theirs: list[database.Connection] = []
    thread = threading.Thread(target=lambda: theirs.append(holder.get()))
    thread.start()
    thread.join()
    assert theirs and theirs[0] is not fresh
    holder.close()


def test_a_failed_statement_leaves_the_transaction_failed_until_rolled_back(
        postgres_url: str) -> None:
    conn = database.connect(postgres_url)
    conn.execute("BEGIN")
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM missing")
    assert conn.in_transaction  # PostgreSQL refuses everything until ROLLBACK
    conn.rollback()
    assert not conn.in_transaction and conn.execute("SELECT 1").fetchone()[0] == 1


def test_processes_starting_together_create_the_schema_once(postgres_url: str) -> None:
    """Without the advisory lock, concurrent CREATE TABLE IF NOT EXISTS of one table fail
    on PostgreSQL (a duplicate key in its catalog)."""
    starters = 6
    meet = threading.Barrier(starters, timeout=30)
    conns = [database.connect(postgres_url) for _ in range(starters)]
    errors: list[BaseException] = []

    def start(conn: database.Connection) -> None:
        meet.wait()
        try:
            database.execute_schema(conn, INDEXER_SCHEMA)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    tables = conns[0].execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        " ORDER BY table_name").fetchall()
    assert [r[0] for r in tables] == ["index_meta", "slices", "study_completion", "vectors",
                                      "volume_series", "work"]
