"""The one transaction helper: ``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on any
error (a failed ``COMMIT`` included)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from database._connect import Connection
from database._dialect import dialect_of

__all__ = ["NestedTransaction", "transaction"]


class NestedTransaction(RuntimeError):
    """:func:`transaction` was called on a connection already in a transaction."""


@contextlib.contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """Run the block in one write transaction on ``conn``: all of it is kept, or none.

    The write lock is taken at the start, so concurrent writers queue up (for at most
    the busy timeout) instead of failing halfway. Transactions do not nest: calling this
    on a connection already in one raises :class:`NestedTransaction`. Functions meant to
    run inside a caller's transaction take the connection and never commit.
    """
    if conn.in_transaction:
        raise NestedTransaction("a transaction is already open on this connection")
    conn.execute(dialect_of(conn).begin)
    try:
        yield conn
        conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
