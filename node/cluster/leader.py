"""The maintenance leader: one process of the cluster (whichever holds an advisory lock
on a session of its own) does the cluster's housekeeping, once a second:

- hands back the claims of dead processes: the work queue's
  (:func:`indexer.queue.return_claims`) and the duties' (:mod:`node.storage.duties`);
- removes the registry rows of processes dead for more than a day;
- prunes the vector change log the serving nodes' indexes follow
  (:func:`indexer.index.prune_changes`: an hour kept).

Leadership moves when the leader's session ends (a stop, a crash): every process tries
the lock each round. Rows (claims) for work items; advisory locks for roles. On SQLite
(one process) there is nothing to do: the worker and the duties put back at start what a
crash left in progress.
"""

from __future__ import annotations

import logging
import threading
import time

import database
from database import Connection, DialectValues
from indexer import queue
from indexer.index import prune_changes
from node.cluster import registry
from node.storage import duties

__all__ = ["LEADER_LOCK", "MaintenanceLeader", "maintain", "wait_leading"]

log = logging.getLogger(__name__)

#: the leader's advisory lock (two int4 keys): "pree", 1
LEADER_LOCK = (0x70726565, 1)
#: dead processes' rows are removed after this long
REAP_AFTER_S = 24 * 3600.0
#: a dead process's work claims are looked for again after this long (a process whose
#: registry session ended while its worker's own connection lived on may claim more)
RETURN_AGAIN_S = 60.0


def maintain(conn: Connection, *, reap_after_s: float = REAP_AFTER_S,
             returned: dict[str, float] | None = None,
             again_s: float = RETURN_AGAIN_S) -> dict[str, int]:
    """One round of the leader's housekeeping; what it did, by name. ``returned`` (the
    leader's memory: dead process id → when its work claims were last handed back) keeps
    the work queue's scan for a dead process's claims to once per ``again_s``."""
    alive = registry.alive_process_ids(conn)
    dead = registry.dead_process_ids(conn)
    done = {"work_returned": 0, "duties_returned": 0, "reaped": 0}
    now = time.time()
    memory = returned if returned is not None else {}
    due = sorted(d for d in dead if now - memory.get(d, 0.0) >= again_s)
    if due:
        done["work_returned"] = queue.return_claims(conn, due)
        memory.update(dict.fromkeys(due, now))
    for gone in set(memory) - dead:
        del memory[gone]
    done["duties_returned"] = duties.return_claims_except(conn, alive)
    done["reaped"] = registry.reap_dead(conn, older_than_s=reap_after_s)
    prune_changes(conn)
    if done["work_returned"] or done["duties_returned"]:
        log.info("claims of dead processes handed back: %d instances, %d duties",
                 done["work_returned"], done["duties_returned"])
    return done


class MaintenanceLeader:
    """Tries to be the leader each ``every_s`` and, while it is, runs :func:`maintain`."""

    def __init__(self, catalog: database.Target, *, every_s: float = 1.0,
                 reap_after_s: float = REAP_AFTER_S) -> None:
        self.catalog = catalog
        self.every_s = every_s
        self.reap_after_s = reap_after_s
        self.leading = threading.Event()
        self._returned: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``; returns at once on SQLite."""
        if database.dialect_for(self.catalog) is not DialectValues.POSTGRESQL:
            return
        conn: Connection | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = database.connect(self.catalog)
                    if not self.leading.is_set() and conn.execute(
                            "SELECT pg_try_advisory_lock(?, ?)", LEADER_LOCK).fetchone()[0]:
                        self.leading.set()
                        log.info("this process is the cluster's maintenance leader")
                    if self.leading.is_set():
                        maintain(conn, reap_after_s=self.reap_after_s,
                                 returned=self._returned)
                except database.DatabaseError as exc:  # the session (and the lock) is gone
                    log.warning("maintenance round failed: %s", exc)
                    self.leading.clear()
                    if conn is not None:
                        conn.close()
                        conn = None
                except Exception:  # the housekeeping must outlive any one round
                    log.exception("maintenance round failed")
                stop.wait(self.every_s)
        finally:
            if conn is not None:
                conn.close()
            self.leading.clear()


def wait_leading(leader: MaintenanceLeader, timeout: float) -> bool:
    """Wait until ``leader`` leads (tests)."""
    deadline = time.monotonic() + timeout
    return leader.leading.wait(max(0.0, deadline - time.monotonic()))
