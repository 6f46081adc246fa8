"""A queue claimer in its own process, for the several-workers test.

usage: python -m tests.indexer._claimer_proc CATALOG NAME GO_FILE BATCH
Waits for GO_FILE to exist (so that several start together), then claims BATCH at a
time under NAME and marks them done until the queue is empty; prints one claimed UID a
line.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from database import connect
from indexer import queue


def main() -> None:
    catalog, name, go, batch = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    conn = connect(catalog)
    while not go.exists():
        time.sleep(0.01)
    while items := queue.claim(conn, batch, claimer=name):
        uids = [it.sop_instance_uid for it in items]
        if queue.mark_done(conn, uids, claimer=name) != len(uids):
            sys.exit(f"{name}: a claim was not mine to complete")
        print("\n".join(uids), flush=True)
    conn.close()


if __name__ == "__main__":
    main()
