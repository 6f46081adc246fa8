"""The transaction helpers: :func:`transaction` (``BEGIN`` … ``COMMIT``, or ``ROLLBACK``
on any error, a failed ``COMMIT`` included) and :func:`retrying` (a transaction run
again, after a short random wait, when it collided with a concurrent one)."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from database._connect import CatalogConnection, is_broken
from database._dialect import IsolationValues, dialect_of
from database._errors import is_conflict
from database._postgres import PostgresConnection

__all__ = ["DEFAULT_ATTEMPTS", "NestedTransaction", "backoff_s", "retrying", "transaction"]

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", bound=CatalogConnection)

#: how many times :func:`retrying` runs a transaction that keeps colliding
DEFAULT_ATTEMPTS = 10
#: the first wait after a collision, and the longest one (seconds)
_FIRST_WAIT_S, _LONGEST_WAIT_S = 0.005, 0.5


class NestedTransaction(RuntimeError):
    """:func:`transaction` was called on a connection already in a transaction."""


@contextlib.contextmanager
def transaction(
    conn: C, *, isolation: IsolationValues | str = IsolationValues.SERIALIZABLE
) -> Iterator[C]:
    """Run the block in one write transaction on ``conn``: all of it is kept, or none.

    SQLite takes the write lock at the start, so concurrent writers queue up (for at most
    the busy timeout) instead of failing halfway. PostgreSQL runs the block at
    ``isolation``; a collision with a concurrent transaction raises the driver's error
    (:func:`database.is_conflict`): write paths that may collide use :func:`retrying`,
    which runs them again. Transactions do not nest: calling this on a connection already
    in one raises :class:`NestedTransaction`. Functions meant to run inside a caller's
    transaction take the connection and never commit.
    """
    if conn.in_transaction:
        raise NestedTransaction("a transaction is already open on this connection")
    level = IsolationValues(isolation)
    if isinstance(conn, PostgresConnection) and conn.broken:
        conn.renew()  # dropped by the server since its last use: nothing was open
    conn.execute(dialect_of(conn).begin(level))
    try:
        yield conn
        conn.commit()
    except BaseException:
        if conn.in_transaction and not is_broken(conn):
            conn.rollback()
        raise


def backoff_s(attempt: int, *, rng: Callable[[], float] = random.random) -> float:
    """How long to wait after the ``attempt``-th collision (1, 2, …): between half and
    all of 5 ms × 2^(attempt-1), at most 0.5 s (random, so that two colliding
    transactions do not collide again in step)."""
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    ceiling = min(_LONGEST_WAIT_S, _FIRST_WAIT_S * 2 ** min(attempt - 1, 16))
    return float(ceiling * (0.5 + 0.5 * rng()))


def retrying(
    conn: C,
    work: Callable[[C], T],
    *,
    isolation: IsolationValues | str = IsolationValues.SERIALIZABLE,
    attempts: int = DEFAULT_ATTEMPTS,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """``work(conn)`` in one :func:`transaction`, run again when it collides with a
    concurrent transaction (serialization failure or deadlock), after a short random
    wait (:func:`backoff_s`); returns what ``work`` returns.

    A first collision is never a failure: only after ``attempts`` runs that all collided
    does the last collision's error propagate (a :data:`database.DatabaseError`). Any other
    error propagates at once, rolled back. ``work`` may run several times, so it must
    change nothing but the catalog (or do only what is safe to repeat). ``sleep`` is the
    wait (inject ``stop.wait`` to honour a stop event). On SQLite ``work`` runs once:
    its writers queue up at ``BEGIN`` instead of colliding.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    attempt = 1
    while True:
        try:
            with transaction(conn, isolation=isolation):
                return work(conn)
        except BaseException as exc:
            if not is_conflict(exc) or attempt >= attempts:
                raise
            wait = backoff_s(attempt)
            log.debug("catalog transaction collided (%s), attempt %d of %d again in %.3f s",
                      getattr(exc, "sqlstate", "?"), attempt + 1, attempts, wait)
            sleep(wait)
            attempt += 1
