"""Queue claims per second, SQLite against PostgreSQL, with 1 and 4 claimers.

Each run queues ``--items`` instances, then ``--claimers`` processes (each its own
connection, as separate workers are) claim ``--batch`` at a time under their own name and
mark each batch done, until the queue is empty; the figure is items claimed and
completed per second of wall time (claim + mark_done, no embedding). PostgreSQL is a
durable throwaway server (``initdb`` + ``pg_ctl`` into a temporary folder, fsync and
synchronous commits on); SQLite is a WAL file with ``synchronous=FULL`` in a temporary
folder. Each figure is the median of ``--repeat``
runs (the runs alternate between the two). Prints both and the ratio PG / SQLite.

    .venv/bin/python bench/queue_claims.py [--items 4000] [--batch 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from database import connect, transaction
from indexer import ensure_schema, queue


def _fill(target: str, items: int) -> None:
    conn = connect(target)
    ensure_schema(conn)
    with transaction(conn):
        for i in range(items):
            queue.enqueue(conn, f"1.2.{i}", f"dicom/{i}.dcm")
    conn.close()


def _claimer(target: str, name: str, batch: int, go: multiprocessing.synchronize.Event,
             done: multiprocessing.queues.Queue[int]) -> None:
    conn = connect(target)
    n = 0
    go.wait()
    while items := queue.claim(conn, batch, claimer=name):
        n += queue.mark_done(conn, [it.sop_instance_uid for it in items], claimer=name)
    conn.close()
    done.put(n)


def _run(target: str, items: int, claimers: int, batch: int) -> float:
    _fill(target, items)
    ctx = multiprocessing.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(target, f"w{i}", batch, go, done))
             for i in range(claimers)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # every process connected and waiting
    t0 = time.perf_counter()
    go.set()
    total = sum(done.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    if total != items:
        raise SystemExit(f"{total} of {items} items completed: the queue lost or doubled some")
    return items / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from tests._postgres import start_postgres

    server = start_postgres(durable=True)
    try:
        print(f"{args.items} items, batches of {args.batch}; items claimed and done per second")
        for claimers in (1, 4):
            lites, pgs = [], []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    lites.append(_run(str(Path(tmp) / "catalog.sqlite"), args.items,
                                      claimers, args.batch))
                url = server.create_database()
                try:
                    pgs.append(_run(url, args.items, claimers, args.batch))
                finally:
                    server.drop_database(url)
            lite, pg = statistics.median(lites), statistics.median(pgs)
            print(f"{claimers} claimer(s): SQLite {lite:8.0f}/s   PostgreSQL {pg:8.0f}/s"
                  f"   PG/SQLite {pg / lite:5.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
