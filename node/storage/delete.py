"""Deleting studies, series and instances: catalog, work queue, vectors, then files.

The catalog is changed first, in one transaction; the files go after it. A crash in
between leaves files nobody references (harmless, and overwritten if the instance is
sent again), never a catalogued instance without its file.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from indexer import queue
from node.errors import UnknownObject

if TYPE_CHECKING:
    from indexer.index import IndexSet

__all__ = ["delete_objects"]

log = logging.getLogger(__name__)


def delete_objects(
    conn: sqlite3.Connection,
    data_dir: Path,
    index_set: IndexSet,
    *,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> int:
    """Delete a study, one of its series or one instance; return how many instances went.

    Raises :class:`UnknownObject` when nothing matches.
    """
    where, params = "study_instance_uid = ?", [study]
    if series is not None:
        where, params = where + " AND series_instance_uid = ?", [*params, series]
    if sop is not None:
        where, params = where + " AND sop_instance_uid = ?", [*params, sop]
    rows = conn.execute(f"SELECT sop_instance_uid, path FROM instances WHERE {where}",
                        params).fetchall()
    if not rows:
        what = "instance" if sop else "series" if series else "study"
        raise UnknownObject(f"no {what} with these UIDs is on this node")
    for sop_uid, _ in rows:
        index_set.delete_instance(sop_uid)  # its vector, and its series' and study's
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sop_uid, _ in rows:
            queue.delete(conn, sop_uid)
        conn.execute(f"DELETE FROM instances WHERE {where}", params)
        conn.execute("DELETE FROM series WHERE study_instance_uid = ? AND series_instance_uid "
                     "NOT IN (SELECT series_instance_uid FROM instances)", (study,))
        if conn.execute("SELECT 1 FROM series WHERE study_instance_uid = ?",
                        (study,)).fetchone() is None:
            conn.execute("DELETE FROM reports WHERE study_instance_uid = ?", (study,))
            conn.execute("DELETE FROM studies WHERE study_instance_uid = ?", (study,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    for _, relpath in rows:
        path = data_dir / relpath
        path.unlink(missing_ok=True)
        for folder in (path.parent, path.parent.parent):  # series, then study folder
            try:
                folder.rmdir()
            except OSError:
                break  # not empty
    log.info("deleted instances=%d study=%s", len(rows), study)
    return len(rows)
