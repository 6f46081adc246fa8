"""Study completeness: a study is stable after a quiet period with no new instance.

Like a PACS, the node cannot know when a sender has finished; it waits
``stable_after_s`` seconds after the last instance and then fires the study-stable
event once. A later instance makes the study unstable again and it fires again.

The same transaction tells the indexer that the study's volume series are complete
(:func:`indexer.slices.study_complete`): their samples are chosen at once, without
waiting for each series' own quiet period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import database
from database import Connection, transaction
from indexer import slices
from node.storage._schema import connect

__all__ = ["StabilityMonitor", "mark_stable_studies"]

log = logging.getLogger(__name__)


def mark_stable_studies(conn: Connection, quiet_s: float, now: float) -> list[str]:
    """Mark studies quiet for ``quiet_s`` as stable, and their volume series complete;
    return their UIDs."""
    with transaction(conn):
        rows = conn.execute(
            "SELECT study_instance_uid FROM studies WHERE stable_at IS NULL AND updated_at <= ?",
            (now - quiet_s,),
        ).fetchall()
        uids = [str(r[0]) for r in rows]
        conn.executemany(
            "UPDATE studies SET stable_at = ? WHERE study_instance_uid = ?",
            [(now, uid) for uid in uids],
        )
        slices.study_complete(conn, uids, now)
    return uids


class StabilityMonitor:
    """Polls the catalog and calls each listener with a study UID when it becomes stable."""

    def __init__(self, *, catalog: database.Target, quiet_s: float,
                 poll_s: float | None = None) -> None:
        if quiet_s <= 0:
            raise ValueError("quiet_s must be positive")
        self.catalog = catalog
        self.quiet_s = quiet_s
        self.poll_s = poll_s if poll_s is not None else min(5.0, max(0.1, quiet_s / 4))
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def run(self, stop: threading.Event) -> None:
        conn = connect(self.catalog)
        try:
            while not stop.wait(self.poll_s):
                for uid in mark_stable_studies(conn, self.quiet_s, time.time()):
                    log.info("study stable study=%s", uid)
                    for listener in self._listeners:
                        try:
                            listener(uid)
                        except Exception:
                            log.exception("study-stable listener failed study=%s", uid)
        finally:
            conn.close()
