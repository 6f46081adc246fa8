"""Colliding transactions are run again, never answered with a failure on a first
collision: real serialization failures and deadlocks on a real PostgreSQL, with threads
that meet at a barrier so that the collision happens every time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import psycopg.errors
import pytest

import database
from database import IsolationValues

SCHEMA = """
CREATE TABLE IF NOT EXISTS duty (doctor TEXT PRIMARY KEY, on_call INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counter (k INTEGER PRIMARY KEY, n INTEGER NOT NULL);
"""


def _fresh(url: str) -> database.Connection:
    conn = database.connect(url)
    database.execute_schema(conn, SCHEMA)
    conn.executemany("INSERT INTO duty (doctor, on_call) VALUES (?, 1)", [("alice",), ("bob",)])
    conn.executemany("INSERT INTO counter (k, n) VALUES (?, 0)", [(1,), (2,)])
    return conn


def _in_threads(*bodies: Callable[[], object]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(body: Callable[[], object]) -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return errors


def _write_skew(url: str, *, attempts: int, waits: list[float]) -> tuple[list[BaseException],
                                                                         dict[str, int]]:
    """Two doctors go off call at the same time if at least one other is on call: both
    read two on call, both write. Serializable lets only one of them do it at first."""
    _fresh(url).close()
    meet = threading.Barrier(2, timeout=30)
    runs = {"alice": 0, "bob": 0}

    def go_off_call(doctor: str) -> Callable[[], object]:
        def work(conn: database.Connection) -> None:
            runs[doctor] += 1
            on_call = conn.execute("SELECT count(*) FROM duty WHERE on_call = 1").fetchone()[0]
            if runs[doctor] == 1:
                meet.wait()  # both have read before either writes
            if on_call >= 2:
                conn.execute("UPDATE duty SET on_call = 0 WHERE doctor = ?", (doctor,))

        def body() -> None:
            conn = database.connect(url)
            try:
                database.retrying(conn, work, attempts=attempts, sleep=waits.append)
            finally:
                conn.close()
        return body

    return _in_threads(go_off_call("alice"), go_off_call("bob")), runs


def test_a_serialization_failure_is_run_again_and_sees_the_winner(postgres_url: str) -> None:
    waits: list[float] = []
    errors, runs = _write_skew(postgres_url, attempts=10, waits=waits)
    assert errors == []
    # the loser ran again (more than once if it collided again with the winner's commit)
    first, last = sorted(runs.values())
    assert first == 1 and last >= 2 and len(waits) == last - 1
    assert all(0 < wait <= 0.005 * 2**i for i, wait in enumerate(waits))
    conn = database.connect(postgres_url)
    # run again, the loser saw one on call and stayed: someone is always on call
    assert conn.execute("SELECT count(*) FROM duty WHERE on_call = 1").fetchone()[0] == 1


def test_collisions_past_the_attempts_raise_the_drivers_error(postgres_url: str) -> None:
    errors, runs = _write_skew(postgres_url, attempts=1, waits=[])
    assert len(errors) == 1 and sorted(runs.values()) == [1, 1]
    assert isinstance(errors[0], database.DatabaseError)
    assert database.is_conflict(errors[0]) and errors[0].sqlstate == "40001"  # type: ignore[attr-defined]
    conn = database.connect(postgres_url)
    assert conn.execute("SELECT count(*) FROM duty WHERE on_call = 1").fetchone()[0] == 1


def test_a_deadlock_is_run_again_at_read_committed(postgres_url: str) -> None:
    _fresh(postgres_url).close()
    meet = threading.Barrier(2, timeout=30)
    runs = {1: 0, 2: 0}
    waits: list[float] = []

    def bump_both(first: int, second: int) -> Callable[[], object]:
        def work(conn: database.Connection) -> None:
            runs[first] += 1
            conn.execute("UPDATE counter SET n = n + 1 WHERE k = ?", (first,))
            if runs[first] == 1:
                meet.wait()  # each holds one row and wants the other's
            conn.execute("UPDATE counter SET n = n + 1 WHERE k = ?", (second,))

        def body() -> None:
            conn = database.connect(postgres_url)
            try:
                database.retrying(conn, work, isolation=IsolationValues.READ_COMMITTED,
                                  sleep=waits.append)
            finally:
                conn.close()
        return body

    assert _in_threads(bump_both(1, 2), bump_both(2, 1)) == []
    # the victim ran again; it may deadlock again if it takes its first row back before
    # the winner does, and is run again then too
    first, last = sorted(runs.values())
    assert first == 1 and last >= 2 and len(waits) == last - 1
    conn = database.connect(postgres_url)
    assert [tuple(r) for r in conn.execute("SELECT k, n FROM counter ORDER BY k")] == [(1, 2),
                                                                                      (2, 2)]


def test_other_errors_are_not_run_again(target: str) -> None:
    conn = database.connect(target)
    database.execute_schema(conn, SCHEMA)
    runs: list[int] = []

    def work(c: database.Connection) -> None:
        runs.append(1)
        c.execute("INSERT INTO duty (doctor, on_call) VALUES ('carol', 1)")
        c.execute("INSERT INTO duty (doctor, on_call) VALUES ('carol', 1)")

    with pytest.raises(database.IntegrityError):
        database.retrying(conn, work, sleep=lambda s: pytest.fail("no wait"))
    assert runs == [1] and not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM duty").fetchone()[0] == 0  # rolled back


def test_retrying_returns_what_the_work_returns_on_both(target: str) -> None:
    conn = database.connect(target)
    database.execute_schema(conn, SCHEMA)
    got = database.retrying(conn, lambda c: c.execute(
        "INSERT INTO counter (k, n) VALUES (?, ?) RETURNING n", (5, 42)).fetchone()[0])
    assert got == 42 and not conn.in_transaction


def test_sqlite_writers_queue_up_instead_of_colliding(tmp_path: Path) -> None:
    """The same write skew on SQLite: the second writer waits at BEGIN IMMEDIATE for the
    first one's commit, reads after it, and runs once."""
    path = str(tmp_path / "c.sqlite")
    _fresh(path).close()
    runs: list[str] = []
    first_in = threading.Event()
    release = threading.Event()

    def go_off_call(doctor: str, hold: bool) -> Callable[[], object]:
        def work(conn: database.Connection) -> None:
            runs.append(doctor)
            on_call = conn.execute("SELECT count(*) FROM duty WHERE on_call = 1").fetchone()[0]
            if hold:
                first_in.set()
                assert release.wait(30)
            if on_call >= 2:
                conn.execute("UPDATE duty SET on_call = 0 WHERE doctor = ?", (doctor,))

        def body() -> None:
            if not hold:
                assert first_in.wait(30)
                threading.Timer(0.2, release.set).start()
            database.retrying(database.connect(path), work, sleep=lambda s: pytest.fail("no wait"))
        return body

    assert _in_threads(go_off_call("alice", True), go_off_call("bob", False)) == []
    assert runs == ["alice", "bob"]  # each once, one after the other
    conn = database.connect(path)
    assert conn.execute("SELECT count(*) FROM duty WHERE on_call = 1").fetchone()[0] == 1


def test_the_wait_grows_and_stays_short() -> None:
    assert database.backoff_s(1, rng=lambda: 0.0) == pytest.approx(0.0025)
    assert database.backoff_s(1, rng=lambda: 1.0) == pytest.approx(0.005)
    assert database.backoff_s(4, rng=lambda: 1.0) == pytest.approx(0.04)
    assert database.backoff_s(100, rng=lambda: 1.0) == pytest.approx(0.5)
    assert database.backoff_s(100, rng=lambda: 0.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="attempt must be at least 1"):
        database.backoff_s(0)
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        database.retrying(database.connect(":memory:"), lambda c: None, attempts=0)


def test_a_conflict_is_told_from_other_errors() -> None:
    assert database.is_conflict(psycopg.errors.SerializationFailure())
    assert database.is_conflict(psycopg.errors.DeadlockDetected())
    assert not database.is_conflict(psycopg.errors.UniqueViolation())
    assert not database.is_conflict(RuntimeError())
