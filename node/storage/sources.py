"""Where an instance came from (the ``instances.source`` column), and which studies are
*priors*.

``source`` is the calling AE title (C-STORE), ``STOW-RS``, ``IMPORT`` (``precedent index
import``), the node's own Key Object Selection documents, ``BACKFILL:<id>`` (pulled from
the PACS by backfill ``<id>``) or ``COLLECTION:<name>`` (an imported image collection).
Backfilled and collection studies are priors: indexed like any other, never answered by
the automatic KOS (:func:`study_is_prior`).

A C-MOVE's instances arrive over the PACS's own association, under its AE title;
:func:`mark_backfilled` gives the backfill's source to what a move brought.
"""

from __future__ import annotations

from collections.abc import Iterable

from database import Connection

__all__ = [
    "BACKFILL_PREFIX",
    "COLLECTION_PREFIX",
    "backfill_source",
    "collection_source",
    "is_prior_source",
    "mark_backfilled",
    "study_is_prior",
]

BACKFILL_PREFIX = "BACKFILL:"
COLLECTION_PREFIX = "COLLECTION:"
_PRIOR = f"(source LIKE '{BACKFILL_PREFIX}%' OR source LIKE '{COLLECTION_PREFIX}%')"


def backfill_source(job_id: int) -> str:
    """The ``source`` of instances backfill ``job_id`` pulled."""
    return f"{BACKFILL_PREFIX}{job_id}"


def collection_source(name: str) -> str:
    """The ``source`` of instances imported from the collection ``name``."""
    return f"{COLLECTION_PREFIX}{name}"


def is_prior_source(source: str | None) -> bool:
    return source is not None and source.upper().startswith((BACKFILL_PREFIX,
                                                              COLLECTION_PREFIX))


def mark_backfilled(conn: Connection, *, study_instance_uid: str,
                    series_instance_uids: Iterable[str] | None, since: float,
                    source: str) -> int:
    """Give ``source`` to the instances of ``study_instance_uid`` (only those of
    ``series_instance_uids`` when given) received at or after ``since`` that are not
    priors already; return how many."""
    sql = (f"UPDATE instances SET source = ? WHERE study_instance_uid = ? "
           f"AND received_at >= ? AND (source IS NULL OR NOT {_PRIOR})")
    params: list[object] = [source, study_instance_uid, since]
    if series_instance_uids is not None:
        series = list(dict.fromkeys(series_instance_uids))
        if not series:
            return 0
        sql += f" AND series_instance_uid IN ({','.join('?' * len(series))})"
        params += series
    return int(conn.execute(sql, params).rowcount)


def study_is_prior(conn: Connection, study_instance_uid: str, *,
                   ignore_sources: Iterable[str] = ()) -> bool:
    """True when the study has instances and every one of them (but those whose source is
    in ``ignore_sources``, e.g. the node's own KOS) came from a backfill or a collection."""
    ignored = list(ignore_sources)
    skip = f" AND (source IS NULL OR source NOT IN ({','.join('?' * len(ignored))}))" \
        if ignored else ""
    row = conn.execute(
        f"SELECT count(*), coalesce(sum(CASE WHEN {_PRIOR} THEN 1 ELSE 0 END), 0) "
        f"FROM instances WHERE study_instance_uid = ?{skip}",
        [study_instance_uid, *ignored],
    ).fetchone()
    total, prior = int(row[0]), int(row[1])
    return total > 0 and prior == total
