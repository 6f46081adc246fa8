"""The drivers' errors as the packages may catch them, whatever the dialect.

``DatabaseError`` and ``IntegrityError`` are tuples of the drivers' classes, usable in
``except`` and ``isinstance``. :func:`is_conflict` tells a transaction that collided with
another (run it again, :func:`database.retrying` does) from a real failure.
"""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors

__all__ = ["DatabaseError", "IntegrityError", "OperationalError", "is_conflict", "is_disk_full"]

#: the base classes of the drivers' errors
DatabaseError: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)

#: a constraint (unique, not null, foreign key, check) refused a write
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)

#: the database could not do the work for reasons outside the statement: the server
#: down or the connection lost (PostgreSQL), the file locked or unreadable (SQLite)
OperationalError: tuple[type[Exception], ...] = (sqlite3.OperationalError,
                                                 psycopg.OperationalError)

#: PostgreSQL's answers to a transaction that collided with a concurrent one
_CONFLICTS = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


def is_conflict(exc: BaseException) -> bool:
    """True when ``exc`` says the transaction collided with a concurrent one
    (serialization_failure 40001, deadlock_detected 40P01): running it again may succeed.

    SQLite never answers so: its writers queue up at ``BEGIN IMMEDIATE`` for the busy
    timeout, and a writer still locked out after that has waited long enough.
    """
    return isinstance(exc, _CONFLICTS)


def is_disk_full(exc: BaseException) -> bool:
    """True when the database could not grow because its disk is full (SQLITE_FULL, or
    PostgreSQL's disk_full 53100)."""
    if isinstance(exc, psycopg.errors.DiskFull):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
