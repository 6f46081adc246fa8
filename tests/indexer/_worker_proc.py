"""A worker in its own process, for the kill-and-restart test.

usage: python -m tests.indexer._worker_proc CATALOG DATA_DIR MODEL_DIR DECODE_PROCESSES [CLAIMER]
Prints one line per batch ("batch N") and exits 0 once the queue is drained. With a
CLAIMER (a name: several workers on one PostgreSQL queue) its index folder is
DATA_DIR/index-CLAIMER.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from indexer.embedder import load_embedder
from indexer.index import IndexSet
from indexer.sampling import VolumeSampling
from indexer.worker import Worker


def main() -> None:
    catalog, data_dir, model_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    processes = int(sys.argv[4])
    claimer = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
    embedder = load_embedder(path=model_dir, device="cpu", precision="fp32")
    index_dir = data_dir / ("index" if claimer is None else f"index-{claimer}")
    index_set = IndexSet.open(
        catalog=catalog, index_dir=index_dir, model_id=embedder.identity, dim=embedder.dim
    )
    worker = Worker(
        catalog=catalog, data_dir=data_dir, embedder=embedder, index_set=index_set,
        batch_size=2, decode_processes=processes, backoff_s=0.0, save_interval_s=0.0,
        sampling=VolumeSampling.every_slice(), claimer=claimer,
    )
    n = 0
    while worker.run_once():
        n += 1
        print(f"batch {n}", flush=True)
        time.sleep(0.02)
    index_set.save()
    worker.close()


if __name__ == "__main__":
    main()
