"""What the catalog holds of a study or series, counted the way a PACS counts it
(Number of Study/Series Related Instances), so that a backfill pulls only what is missing
and an import skips what is stored already."""

from __future__ import annotations

from collections.abc import Iterable

from database import Connection

__all__ = [
    "series_instance_counts",
    "series_sop_instance_uids",
    "stored_sop_instance_uids",
    "study_instance_count",
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
    return {str(r[0]) for r in conn.execute(
        "SELECT sop_instance_uid FROM instances WHERE series_instance_uid = ?",
        (series_instance_uid,))}


def stored_sop_instance_uids(conn: Connection, sop_instance_uids: Iterable[str]) -> set[str]:
    """Those of ``sop_instance_uids`` the node holds."""
    uids = list(dict.fromkeys(sop_instance_uids))
    found: set[str] = set()
    for start in range(0, len(uids), _CHUNK):
        chunk = uids[start:start + _CHUNK]
        found |= {str(r[0]) for r in conn.execute(
            f"SELECT sop_instance_uid FROM instances WHERE sop_instance_uid IN "
            f"({','.join('?' * len(chunk))})", chunk)}
    return found
