"""The dialect layer is tested on both dialects: ``target`` is a fresh catalog of each
(a SQLite file, a new database on the session's PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import database
from tests._postgres import PostgresServer

__all__ = ["connect", "target"]


@pytest.fixture(params=[database.DialectValues.SQLITE, database.DialectValues.POSTGRESQL],
                ids=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalog of each dialect: a file path, or a PostgreSQL URL."""
    if request.param is database.DialectValues.SQLITE:
        return str(tmp_path / "catalog.sqlite")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    request.addfinalizer(lambda: server.drop_database(url))
    return url


@pytest.fixture
def connect(target: str) -> Iterator[Callable[[], database.Connection]]:
    """Opens connections to ``target``; all are closed after the test."""
    opened: list[database.Connection] = []

    def open_one() -> database.Connection:
        conn = database.connect(target)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        conn.close()
