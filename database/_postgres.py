"""The PostgreSQL connection (psycopg 3) with the surface the packages use of
:class:`sqlite3.Connection`, so that one catalog layer serves both dialects.

- autocommit: statements outside :func:`database.transaction` commit at once, and a
  transaction is explicit (``BEGIN`` … ``COMMIT``), as on the SQLite connection;
- ``?`` parameters (translated to psycopg's ``%s``, see :mod:`database._placeholders`);
- rows readable by position and by name (:class:`database._row.Row`);
- ``numeric`` results (``sum`` of integers, ``avg``) read as ``int`` when integral in
  type and ``float`` otherwise, as SQLite gives them, not as :class:`~decimal.Decimal`;
- durable commits: a server configured with ``synchronous_commit = off`` is told ``on``
  for this session (success is answered only for what is on disk);
- a connection the server dropped (restart, failover, idle timeout) is opened again
  before the next transaction begins, never in the middle of one.

The password of a URL never appears in a message (:func:`redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
import psycopg.adapt
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from database._placeholders import to_pyformat
from database._row import Row, row_factory

__all__ = ["CatalogUnavailable", "PostgresConnection", "connect_postgresql", "redact"]

#: connection parameters a URL may override: a timeout for reaching the server, a name in
#: pg_stat_activity, and TCP keepalives, so that a peer lost to the network ends its
#: session, and releases its locks, within about a minute (idle 30 s, 3 probes 10 s apart)
_DEFAULTS: dict[str, str | int] = {
    "connect_timeout": 10, "application_name": "precedent",
    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
}

_PASSWORD = re.compile(r"(://[^/@:]*:)[^@/]*@")


class CatalogUnavailable(psycopg.OperationalError):
    """The PostgreSQL catalog could not be reached or refused the connection."""


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", url)


class _NumericLoader(psycopg.adapt.Loader):
    """``numeric`` as SQLite would answer it: ``int`` without a fractional part in the
    type (``sum`` of integers), ``float`` with one (``avg``)."""

    def load(self, data: psycopg.abc.Buffer) -> int | float:
        text = bytes(data).decode("ascii")
        if "." in text or text in ("NaN", "Infinity", "-Infinity"):
            return float(text)
        return int(text)


Cursor = psycopg.Cursor[Row]


class PostgresConnection:
    """A psycopg connection with the methods of :class:`sqlite3.Connection` the packages
    call. One belongs to one thread at a time, as with SQLite."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._raw = _open(url)

    @property
    def raw(self) -> psycopg.Connection[Row]:
        """The psycopg connection (for what only PostgreSQL has: ``COPY``, ``LISTEN``)."""
        return self._raw

    @property
    def in_transaction(self) -> bool:
        """True between ``BEGIN`` and ``COMMIT``/``ROLLBACK`` (a failed one included)."""
        return self._raw.info.transaction_status in (
            TransactionStatus.INTRANS, TransactionStatus.INERROR
        )

    @property
    def broken(self) -> bool:
        """True when the connection was closed or lost; :meth:`renew` opens a new one."""
        return self._raw.closed or self._raw.broken

    def renew(self) -> None:
        """Open a fresh connection in place of a lost one (never inside a transaction:
        what it had not committed is gone, and its caller must hear so)."""
        if self.in_transaction and not self.broken:
            raise psycopg.ProgrammingError("renew() called inside a transaction")
        self._raw.close()
        self._raw = _open(self.url)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        """Run one statement with ``?`` parameters; the cursor holds its rows."""
        cur = self._raw.cursor()
        if parameters:
            cur.execute(to_pyformat(sql), tuple(parameters))
        else:
            cur.execute(sql)
        return cur

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]]) -> Cursor:
        """Run one statement once per parameter tuple (pipelined by psycopg)."""
        cur = self._raw.cursor()
        cur.executemany(to_pyformat(sql), [tuple(p) for p in seq_of_parameters])
        return cur

    def executescript(self, sql: str) -> Cursor:
        """Run several statements (no parameters), as :meth:`sqlite3.Connection.executescript`
        does, except that a transaction already open stays open."""
        cur = self._raw.cursor()
        cur.execute(sql)
        return cur

    def stream(self, sql: str, parameters: Sequence[Any] = (), *,
               size: int = 1000) -> Iterator[Row]:
        """The rows of one query, fetched ``size`` at a time (never all held here)."""
        cur = self._raw.cursor()
        query = to_pyformat(sql) if parameters else sql
        yield from cur.stream(query, tuple(parameters) or None, size=size)

    def commit(self) -> None:
        """Commit the transaction open on this connection, if any."""
        self._raw.commit()

    def rollback(self) -> None:
        """Roll back the transaction open on this connection, if any."""
        self._raw.rollback()

    def close(self) -> None:
        """Close the connection (what was not committed is rolled back by the server)."""
        self._raw.close()


def connect_postgresql(url: str) -> PostgresConnection:
    """Open a connection to the PostgreSQL catalog at ``url``.

    Raises :class:`CatalogUnavailable`, with a one-line message that names the server
    (never the password) and what to check, when it cannot.
    """
    return PostgresConnection(url)


def _reason(exc: BaseException) -> str:
    """The driver's message on one line, any URL in it without its password."""
    return redact(" ".join(str(exc).split())) or type(exc).__name__


def _open(url: str) -> psycopg.Connection[Row]:
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise CatalogUnavailable(
            f"the catalog URL {redact(url)} is not valid ({_reason(exc)}); "
            "write it as postgresql://user:password@host:port/database"
        ) from exc
    for key, value in _DEFAULTS.items():
        params.setdefault(key, value)  # what the URL says wins
    try:
        raw = psycopg.connect(make_conninfo("", **params), autocommit=True,
                              row_factory=row_factory)
    except psycopg.OperationalError as exc:
        raise CatalogUnavailable(
            f"cannot open the catalog {redact(url)}: {_reason(exc)}; check [catalog] url and "
            "that the server accepts this host and user"
        ) from exc
    raw.adapters.register_loader("numeric", _NumericLoader)
    row = raw.execute("SHOW synchronous_commit").fetchone()
    if row is not None and row[0] == "off":
        raw.execute("SET synchronous_commit = on")
    return raw
