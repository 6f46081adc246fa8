"""What the catalog holds: a study, series or instance and its parents, the instances of
each, counted the way a PACS counts them (Number of Study/Series Related Instances) so
that a backfill pulls only what is missing and an import skips what is stored already.

The catalog's tables belong to :mod:`node.storage`; the domain (similar-case answers, the
KOS, the health route) reads them through these functions, never with its own SQL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from database import Connection

__all__ = [
    "catalog_counts",
    "instance_in_series",
    "instance_paths",
    "instance_records",
    "last_received",
    "series_in_study",
    "series_instance_counts",
    "series_of_instances",
    "series_sop_instance_uids",
    "sop_instance_uids",
    "stored_sop_instance_uids",
    "study_instance_count",
    "study_record",
]

#: rows per ``IN (…)`` query
_CHUNK = 500


def study_instance_count(conn: Connection, study_instance_uid: str) -> int:
    """How many instances of the study the node holds."""
    row = conn.execute("SELECT count(*) FROM instances WHERE study_instance_uid = ?",
                       (study_instance_uid,)).fetchone()
    return int(row[0])


def series_instance_counts(conn: Connection, study_instance_uid: str) -> dict[str, int]:
    """Series Instance UID → how many of its instances the node holds, for one study."""
    return {str(r[0]): int(r[1]) for r in conn.execute(
        "SELECT series_instance_uid, count(*) FROM instances WHERE study_instance_uid = ? "
        "GROUP BY series_instance_uid", (study_instance_uid,))}


def series_sop_instance_uids(conn: Connection, series_instance_uid: str) -> set[str]:
    """The SOP Instance UIDs of the series the node holds."""
    return set(sop_instance_uids(conn, series_instance_uid=series_instance_uid))


def sop_instance_uids(conn: Connection, *, study_instance_uid: str | None = None,
                      series_instance_uid: str | None = None,
                      sop_instance_uid: str | None = None) -> list[str]:
    """The SOP Instance UIDs the node holds of one study, series or instance (name one)."""
    given = {"study_instance_uid": study_instance_uid,
             "series_instance_uid": series_instance_uid,
             "sop_instance_uid": sop_instance_uid}
    [(column, uid)] = [(c, u) for c, u in given.items() if u is not None]
    return [str(r[0]) for r in conn.execute(
        f"SELECT sop_instance_uid FROM instances WHERE {column} = ?", (uid,))]


def _instances_in(conn: Connection, columns: str, sop_instance_uids: Iterable[str]
                  ) -> Iterator[Any]:
    """The ``instances`` rows (``columns``) of those SOP Instance UIDs the node holds."""
    uids = list(dict.fromkeys(sop_instance_uids))
    for start in range(0, len(uids), _CHUNK):
        chunk = uids[start:start + _CHUNK]
        yield from conn.execute(
            f"SELECT {columns} FROM instances WHERE sop_instance_uid IN "
            f"({','.join('?' * len(chunk))})", chunk)


def stored_sop_instance_uids(conn: Connection, sop_instance_uids: Iterable[str]) -> set[str]:
    """Those of ``sop_instance_uids`` the node holds."""
    return {str(r[0]) for r in _instances_in(conn, "sop_instance_uid", sop_instance_uids)}


def instance_paths(conn: Connection, sop_instance_uids: Iterable[str]) -> dict[str, str]:
    """The stored file (relative to the data folder) of those the node holds."""
    return {str(r[0]): str(r[1])
            for r in _instances_in(conn, "sop_instance_uid, path", sop_instance_uids)}


def series_of_instances(conn: Connection, sop_instance_uids: Iterable[str]) -> dict[str, str]:
    """SOP Instance UID → its Series Instance UID, for those the node holds."""
    return {str(r[0]): str(r[1]) for r in _instances_in(
        conn, "sop_instance_uid, series_instance_uid", sop_instance_uids)}


def instance_records(conn: Connection, sop_instance_uids: Iterable[str]) -> list[Any]:
    """The SOP Instance, SOP Class, Series and Study UIDs, rows and columns of those the
    node holds (by name: ``sop_instance_uid``, ``sop_class_uid``, … ``rows``,
    ``columns``)."""
    return list(_instances_in(
        conn, "sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid, "
        "rows, columns", sop_instance_uids))


def study_record(conn: Connection, study_instance_uid: str) -> Any:
    """The study's catalog row (its Patient and General Study attributes, by column name),
    or None when the node does not hold it."""
    return conn.execute("SELECT * FROM studies WHERE study_instance_uid = ?",
                        (study_instance_uid,)).fetchone()


def series_in_study(conn: Connection, series_instance_uid: str,
                    study_instance_uid: str) -> bool:
    """Whether the node holds the series, in that study."""
    return conn.execute(
        "SELECT 1 FROM series WHERE series_instance_uid = ? AND study_instance_uid = ?",
        (series_instance_uid, study_instance_uid)).fetchone() is not None


def instance_in_series(conn: Connection, sop_instance_uid: str,
                       series_instance_uid: str) -> bool:
    """Whether the node holds the instance, in that series."""
    return conn.execute(
        "SELECT 1 FROM instances WHERE sop_instance_uid = ? AND series_instance_uid = ?",
        (sop_instance_uid, series_instance_uid)).fetchone() is not None


def last_received(conn: Connection, study_instance_uid: str, source: str
                  ) -> tuple[float | None, float | None]:
    """When the study last received an instance from ``source``, and from anyone else
    (None for never)."""
    row = conn.execute(
        """SELECT max(CASE WHEN source = ? THEN received_at END),
                  max(CASE WHEN source != ? OR source IS NULL THEN received_at END)
           FROM instances WHERE study_instance_uid = ?""",
        (source, source, study_instance_uid),
    ).fetchone()
    return row[0], row[1]


def catalog_counts(conn: Connection) -> tuple[int, int]:
    """How many studies and instances the node holds."""
    studies = conn.execute("SELECT count(*) FROM studies").fetchone()[0]
    instances = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
    return int(studies), int(instances)
