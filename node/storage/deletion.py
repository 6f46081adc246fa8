"""Deleting studies, series and instances: catalog rows, work queue entries and vectors in
one transaction; then the in-memory index and the files.

The order makes every crash harmless:

- before the commit, nothing has changed;
- after it, the saved index files name an older catalog generation than the one the
  deletion bumped, so they are rebuilt from the ``vectors`` table at the next start
  (SQLite; on PostgreSQL the deletion's entries in the change log are replayed instead),
  and the in-memory index is brought in step right after the commit, when one is loaded;
- files are removed last: a crash before leaves files nobody references (harmless, and
  overwritten if the instance is sent again), never a catalogued instance without its file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from database import Connection, retrying
from indexer import queue
from indexer.index import delete_instances
from node.errors import UnknownObject

if TYPE_CHECKING:
    from indexer.index import IndexSet, VectorChanges

__all__ = ["delete_objects"]

log = logging.getLogger(__name__)


def delete_objects(
    conn: Connection,
    data_dir: Path,
    index_set: IndexSet | None,
    *,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> int:
    """Delete a study, one of its series or one instance; return how many instances went.

    ``index_set`` is the loaded index to bring in step (None when no model is loaded: the
    saved index files are then rebuilt when next opened). Raises :class:`UnknownObject`
    when nothing matches.
    """
    where, params = "study_instance_uid = ?", [study]
    if series is not None:
        where, params = where + " AND series_instance_uid = ?", [*params, series]
    if sop is not None:
        where, params = where + " AND sop_instance_uid = ?", [*params, sop]
    def delete(conn: Connection) -> tuple[list[Any], VectorChanges]:
        rows = conn.execute(
            f"SELECT sop_instance_uid, path FROM instances WHERE {where}", params
        ).fetchall()
        if not rows:
            what = "instance" if sop else "series" if series else "study"
            raise UnknownObject(f"no {what} with these UIDs is on this node")
        uids = [str(r[0]) for r in rows]
        queue.delete(conn, uids)
        changes = delete_instances(conn, uids)  # and their series' and study's vectors
        conn.execute(f"DELETE FROM instances WHERE {where}", params)
        conn.execute("DELETE FROM series WHERE study_instance_uid = ? AND series_instance_uid "
                     "NOT IN (SELECT series_instance_uid FROM instances)", (study,))
        if conn.execute("SELECT 1 FROM series WHERE study_instance_uid = ?",
                        (study,)).fetchone() is None:
            conn.execute("DELETE FROM reports WHERE study_instance_uid = ?", (study,))
            conn.execute("DELETE FROM studies WHERE study_instance_uid = ?", (study,))
        return rows, changes

    # a concurrent ingest into the study collides on PostgreSQL: this is run again, and
    # the instance is then either deleted with the rest or stored after
    rows, changes = retrying(conn, delete)
    if index_set is not None:
        index_set.apply(changes)
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
