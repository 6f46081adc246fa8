"""A real PostgreSQL for the tests: Debian's ``postgresql`` package, ``initdb`` and
``pg_ctl`` into a temporary folder, listening on 127.0.0.1 on a free port, run as a
non-root user (``postgres``, created by the package, when the tests run as root).

Helpers (plain functions, usable from benchmarks too):

- :func:`postgres_bin` — the folder of the newest installed server's programs
  (``/usr/lib/postgresql/<version>/bin``), or ``None``;
- :func:`start_postgres` — a fresh cluster in a folder of its own; ``stop()`` removes it;
- :class:`PostgresServer` — its URL, ``create_database()`` / ``drop_database()``.

Pytest fixtures (import them into a ``conftest.py``):

- ``postgres_server`` — one cluster for the session;
- ``postgres_url`` — a fresh, empty database on it for one test, dropped afterwards.

The cluster is for tests only: trust authentication on the loopback, and ``fsync=off``
(a crash of the machine may lose it; the tests never crash the machine). Where the
server's programs are missing the fixtures skip, except under CI (``CI`` set), where they
fail: CI must run these tests (``scripts/test.sh`` installs the package).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests._peers import free_port

__all__ = ["PostgresServer", "postgres_bin", "postgres_server", "postgres_url", "start_postgres"]

#: where Debian puts each server version's programs
_DEBIAN_BINS = Path("/usr/lib/postgresql")
#: the user the server runs as when the tests run as root (initdb refuses root)
_SERVER_USER = os.environ.get("PRECEDENT_TEST_PG_USER", "postgres")
#: settings for a small, fast, test-only cluster
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "deadlock_timeout": "100ms",  # collisions found fast in the retry tests
    "log_min_messages": "warning",
    "max_locks_per_transaction": "128",
}


def postgres_bin() -> Path | None:
    """The newest installed server's program folder, or ``None`` if none is installed."""
    found = sorted(
        (d for d in _DEBIAN_BINS.glob("*/bin") if (d / "pg_ctl").is_file()),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@dataclass
class PostgresServer:
    """A running test cluster."""

    folder: Path
    port: int
    user: str
    bin: Path
    _run_as: dict[str, object] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The URL of its ``postgres`` database (the superuser's)."""
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, ending the sessions still on it."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, n: int = 40) -> str:
        log = self.folder / "server.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        subprocess.run([str(self.bin / "pg_ctl"), "stop", "-D", str(self.folder / "data"),
                        "-m", "immediate", "-w"], capture_output=True, timeout=60,
                       **self._run_as)  # type: ignore[call-overload]
        shutil.rmtree(self.folder, ignore_errors=True)


#: what a benchmark's cluster changes: durable as a hospital's server would be
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
           "shared_buffers": "512MB"}


def start_postgres(*, bin_dir: Path | None = None, durable: bool = False) -> PostgresServer:
    """``initdb`` and ``pg_ctl start`` a cluster in a new temporary folder, on a free
    loopback port, as a non-root user; ``durable`` turns fsync and synchronous commits
    on (benchmarks: the tests' cluster has them off). Raises ``RuntimeError`` with the
    server's log when it does not start."""
    bin_dir = bin_dir or postgres_bin()
    if bin_dir is None:
        raise RuntimeError(f"no PostgreSQL server under {_DEBIAN_BINS}: "
                           "apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="precedent-pg-"))
    run_as: dict[str, object] = {}
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(_SERVER_USER)
        except KeyError:
            raise RuntimeError(f"no user {_SERVER_USER!r} to run PostgreSQL as (root may "
                               "not): install postgresql, or set PRECEDENT_TEST_PG_USER") from None
        os.chown(folder, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        user = account.pw_name
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
    data = folder / "data"
    init = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust",
         "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
        capture_output=True, text=True, timeout=120, cwd=folder, **run_as,  # type: ignore[call-overload]
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
    port = free_port()
    settings = {**_SETTINGS, **(DURABLE if durable else {}), "port": str(port),
                "unix_socket_directories": f"'{folder}'"}
    with (data / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    server = PostgresServer(folder, port, user, bin_dir, run_as)
    start = subprocess.run(
        [str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(folder / "server.log"),
         "-w", "-t", "60"],
        capture_output=True, text=True, timeout=90, cwd=folder, **run_as,  # type: ignore[call-overload]
    )
    if start.returncode != 0:
        tail = server.log_tail()
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {start.stderr.strip()}\n{tail}")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole session (skips where none is installed,
    except under CI)."""
    if postgres_bin() is None:
        message = f"PostgreSQL is not installed (no {_DEBIAN_BINS}/*/bin/pg_ctl)"
        if _in_ci():
            pytest.fail(message + ": CI must run the PostgreSQL tests (apt-get install postgresql)")
        pytest.skip(message)
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test; its URL."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        with contextlib.suppress(psycopg.Error):
            postgres_server.drop_database(url)
