"""A worker in its own process, for the kill-and-restart test.

usage: python -m tests.indexer._worker_proc DATA_DIR MODEL_DIR DECODE_PROCESSES
Prints one line per batch ("batch N") and exits 0 once the queue is drained.
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
    data_dir, model_dir, processes = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    embedder = load_embedder(path=model_dir, device="cpu", precision="fp32")
    db = data_dir / "catalog.sqlite"
    index_set = IndexSet.open(
        catalog=db, index_dir=data_dir / "index", model_id=embedder.identity, dim=embedder.dim
    )
    worker = Worker(
        catalog=db, data_dir=data_dir, embedder=embedder, index_set=index_set,
        batch_size=2, decode_processes=processes, backoff_s=0.0, save_interval_s=0.0,
        sampling=VolumeSampling.every_slice(),
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
