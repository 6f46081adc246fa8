"""The process registry: every ``precedent serve`` and ``precedent worker`` on a
PostgreSQL catalog registers in ``processes`` and holds a session advisory lock on a
connection of its own; a process is alive exactly while that lock is held.

The server releases a session's locks the moment the session ends, so a process killed
with SIGKILL (its socket closes) is dead at once, and a machine lost to the network
within about a minute (the TCP keepalives :func:`database.connect` sets). ``seen_at``,
written every few seconds, is for people (``precedent status``), never for deciding.

Registering inserts the row and takes its lock in one transaction, so no other process
ever sees the row of a live process without its lock. The process id (a UUID) is what
its claims carry (``work.claimed_by``, ``duties.claimed_by``); the maintenance leader
(:mod:`node.cluster.leader`) hands back the claims of the dead.

On SQLite (one process per data folder, held by the folder's lock) there is no
registry: :class:`Registration` only makes the process id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import database
from database import Connection, DialectValues, dialect_of

__all__ = [
    "PROCESS_LOCK_NS",
    "ProcessKindValues",
    "ProcessRecord",
    "Registration",
    "alive_process_ids",
    "dead_process_ids",
    "ensure_schema",
    "list_processes",
    "reap_dead",
]

log = logging.getLogger(__name__)

#: the first key of each process's advisory lock (the second is its row's ``rowid``):
#: "prec" + 1; the maintenance leader's lock is in :mod:`node.cluster.leader`
PROCESS_LOCK_NS = 0x70726564
#: how often a registered process writes ``seen_at``
SEEN_EVERY_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS processes (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, data_dir TEXT NOT NULL,
    version TEXT NOT NULL, model_id TEXT, ae_title TEXT, http_url TEXT,
    started_at REAL NOT NULL, seen_at REAL NOT NULL
);
"""


class ProcessKindValues(str, Enum):
    """What a registered process runs."""

    SERVE = "serve"  #: ``precedent serve``: DIMSE, REST, (optionally) the indexer
    WORKER = "worker"  #: ``precedent worker``: the indexer alone


@dataclass(frozen=True)
class ProcessRecord:
    """One row of ``processes``, and whether it is alive now."""

    id: str
    kind: str
    host: str
    pid: int
    data_dir: str
    version: str
    model_id: str | None
    ae_title: str | None
    http_url: str | None
    started_at: float
    seen_at: float
    alive: bool

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def ensure_schema(conn: Connection) -> None:
    """Create ``processes`` (PostgreSQL only: SQLite has no registry). Each row's lock
    key is its ``rowid`` (the identity every PostgreSQL table gets), never reused."""
    if dialect_of(conn) is not DialectValues.POSTGRESQL:
        return
    database.execute_schema(conn, SCHEMA)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("precedent")
    except PackageNotFoundError:
        return "unknown"


def _alive_sql() -> str:
    """The registered ids whose lock is held (granted) in this database."""
    return (
        "SELECT p.id FROM processes p JOIN pg_locks l ON l.locktype = 'advisory'"
        " AND l.granted AND l.classid = ?::oid AND l.objid::bigint = p.rowid"
        " AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database"
        " WHERE datname = current_database())"
    )


def alive_process_ids(conn: Connection) -> set[str]:
    """The ids of the registered processes alive now (their advisory lock is held);
    empty on SQLite."""
    if dialect_of(conn) is not DialectValues.POSTGRESQL:
        return set()
    rows = conn.execute(_alive_sql(), (PROCESS_LOCK_NS,)).fetchall()
    return {str(r[0]) for r in rows}


def dead_process_ids(conn: Connection) -> set[str]:
    """The ids of registered processes that are not alive (their claims may be handed
    back); empty on SQLite."""
    if dialect_of(conn) is not DialectValues.POSTGRESQL:
        return set()
    rows = conn.execute(f"SELECT id FROM processes WHERE id NOT IN ({_alive_sql()})",
                        (PROCESS_LOCK_NS,)).fetchall()
    return {str(r[0]) for r in rows}


def list_processes(conn: Connection) -> list[ProcessRecord]:
    """Every registered process, oldest first, with whether it is alive; empty on
    SQLite."""
    if dialect_of(conn) is not DialectValues.POSTGRESQL:
        return []
    alive = alive_process_ids(conn)
    rows = conn.execute(
        "SELECT id, kind, host, pid, data_dir, version, model_id, ae_title, http_url,"
        " started_at, seen_at FROM processes ORDER BY started_at, rowid").fetchall()
    return [ProcessRecord(str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]),
                          r[6], r[7], r[8], float(r[9]), float(r[10]), str(r[0]) in alive)
            for r in rows]


def reap_dead(conn: Connection, *, older_than_s: float, now: float | None = None) -> int:
    """Remove the rows of dead processes last seen more than ``older_than_s`` ago
    (their claims were handed back long before); return how many."""
    dead = dead_process_ids(conn)
    if not dead:
        return 0
    cutoff = (time.time() if now is None else now) - older_than_s
    count = 0
    for pid in sorted(dead):
        cur = conn.execute("DELETE FROM processes WHERE id = ? AND seen_at < ?", (pid, cutoff))
        count += max(0, cur.rowcount)
    return count


class Registration:
    """This process in the registry, from :meth:`register` until :meth:`close`.

    ``id`` is the process id its claims carry, on either catalog (``process_id``, when
    given, else a new UUID). ``model_id`` says which model the process embeds with (read
    at each ``seen_at``). On PostgreSQL the
    registration holds a dedicated connection with the advisory lock, and a thread
    writes ``seen_at`` every :data:`SEEN_EVERY_S` seconds.
    """

    def __init__(self, catalog: database.Target, *, kind: ProcessKindValues | str,
                 process_id: str | None = None,
                 data_dir: str, model_id: Callable[[], str | None] | None = None,
                 ae_title: str | None = None, http_url: str | None = None) -> None:
        self.id = process_id or str(uuid.uuid4())
        self.kind = ProcessKindValues(kind)
        self.catalog = catalog
        self.data_dir = data_dir
        self._model_id = model_id
        self.ae_title = ae_title
        self.http_url = http_url
        self.shared = database.dialect_for(catalog) is DialectValues.POSTGRESQL
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # the registry connection, between two threads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> Registration:
        """Insert the row and take its lock (PostgreSQL); nothing on SQLite."""
        if not self.shared:
            return self
        conn = database.connect(self.catalog)
        try:
            ensure_schema(conn)
            now = time.time()
            with database.transaction(conn):
                row = conn.execute(
                    "INSERT INTO processes (id, kind, host, pid, data_dir, version,"
                    " model_id, ae_title, http_url, started_at, seen_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING rowid",
                    (self.id, self.kind.value, socket.gethostname(), os.getpid(),
                     self.data_dir, _version(), self.model_id, self.ae_title, self.http_url,
                     now, now)).fetchone()
                conn.execute("SELECT pg_advisory_lock(?, ?)", (PROCESS_LOCK_NS, int(row[0])))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                        name="precedent-registry")
        self._thread.start()
        log.info("registered in the catalog: %s process %s", self.kind.value, self.id)
        return self

    @property
    def model_id(self) -> str | None:
        """The model this process embeds with, once loaded."""
        return self._model_id() if self._model_id is not None else None

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute(sql, params)
            except database.DatabaseError as exc:
                # the lock went with the session: the leader will see this process dead
                log.warning("the process registry's connection failed: %s", exc)

    def refresh(self) -> None:
        """Write ``seen_at`` and the model now (the heartbeat does every few seconds)."""
        self._write("UPDATE processes SET seen_at = ?, model_id = ? WHERE id = ?",
                    (time.time(), self.model_id, self.id))

    def _heartbeat(self) -> None:
        while not self._stop.wait(SEEN_EVERY_S):
            self.refresh()

    def close(self) -> None:
        """Leave the registry: the lock goes with the connection (the row stays, dead,
        until the leader reaps it). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*database.DatabaseError):
                conn.execute("UPDATE processes SET seen_at = ? WHERE id = ?",
                             (time.time(), self.id))
                # at once (a closed session's locks go when its server process ends)
                conn.execute("SELECT pg_advisory_unlock_all()")
            conn.close()
