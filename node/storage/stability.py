"""Study completeness: a study is stable after a quiet period with no new instance.

Like a PACS, the node cannot know when a sender has finished; it waits
``stable_after_s`` seconds after the last instance and then fires the study-stable
event once. A later instance makes the study unstable again and it fires again.

Once across the cluster: the event is one statement, ``UPDATE studies SET stable_at = ?
WHERE stable_at IS NULL AND updated_at <= ? RETURNING study_instance_uid``, on both
dialects. Several ``serve`` processes may scan at once; on PostgreSQL a second UPDATE
waits on the row lock, sees ``stable_at`` set and returns no row, so exactly one process
owns each event. The same transaction tells the indexer that the study's volume series
are complete (:func:`indexer.slices.study_complete`: their samples are chosen at once)
and enqueues the event's duties (:mod:`node.storage.duties`: the automatic KOS), so a
crash between the event and its action loses nothing. The in-process listeners are
called by the process that marked the study.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import database
from database import Connection, IsolationValues
from indexer import slices
from node.storage import duties
from node.storage._schema import connect

__all__ = ["StabilityMonitor", "mark_stable_studies"]

log = logging.getLogger(__name__)


def mark_stable_studies(conn: Connection, quiet_s: float, now: float, *,
                        follow_ups: Sequence[duties.DutyKindValues] = ()) -> list[str]:
    """Mark studies quiet for ``quiet_s`` as stable, their volume series complete, and
    enqueue the ``follow_ups`` duties of each; return their UIDs (each to exactly one
    caller across the cluster)."""

    def work(c: Connection) -> list[str]:
        rows = c.execute(
            "UPDATE studies SET stable_at = ? WHERE stable_at IS NULL AND updated_at <= ?"
            " RETURNING study_instance_uid", (now, now - quiet_s)).fetchall()
        uids = sorted(str(r[0]) for r in rows)
        if uids:
            slices.study_complete(c, uids, now)
            for kind in follow_ups:
                duties.enqueue(c, kind, uids, now=now)
        return uids

    return database.retrying(conn, work, isolation=IsolationValues.READ_COMMITTED)


class StabilityMonitor:
    """Polls the catalog and calls each listener with a study UID when it becomes stable
    (in this process: the one that marked it); ``follow_ups`` are the duties each stable
    study gets."""

    def __init__(self, *, catalog: database.Target, quiet_s: float,
                 poll_s: float | None = None,
                 follow_ups: Sequence[duties.DutyKindValues] = ()) -> None:
        if quiet_s <= 0:
            raise ValueError("quiet_s must be positive")
        self.catalog = catalog
        self.quiet_s = quiet_s
        self.poll_s = poll_s if poll_s is not None else min(5.0, max(0.1, quiet_s / 4))
        self.follow_ups = list(follow_ups)
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def add_follow_up(self, kind: duties.DutyKindValues) -> None:
        """Each study that becomes stable gets a duty of ``kind``."""
        if kind not in self.follow_ups:
            self.follow_ups.append(kind)

    def run(self, stop: threading.Event) -> None:
        conn = connect(self.catalog)
        try:
            while not stop.wait(self.poll_s):
                try:
                    uids = mark_stable_studies(conn, self.quiet_s, time.time(),
                                               follow_ups=self.follow_ups)
                except database.DatabaseError as exc:  # the catalog away for a moment
                    log.warning("stability scan failed: %s", exc)
                    continue
                for uid in uids:
                    log.info("study stable study=%s", uid)
                    for listener in self._listeners:
                        try:
                            listener(uid)
                        except Exception:
                            log.exception("study-stable listener failed study=%s", uid)
        finally:
            conn.close()
