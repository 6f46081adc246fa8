"""Saving the indexes (a second or so at 100,000 vectors) excludes changes to them, not
searches: similar-case queries go on while the worker saves."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from indexer import LevelValues
from indexer.index import IndexSet, InstanceVector

DIM = 16
MODEL = "local-dir:test@000000000001"


def _iv(uid: str, vec: np.ndarray) -> InstanceVector:
    return InstanceVector(uid, "1.1", "1", (vec / np.linalg.norm(vec)).astype(np.float32))


def test_a_search_does_not_wait_for_a_save_a_change_does(tmp_path: Path,
                                                          target: str | Path) -> None:
    ix = IndexSet.open(catalog=target, index_dir=tmp_path / "index",
                       model_id=MODEL, dim=DIM)
    rng = np.random.default_rng(0)
    ix.add_instances([_iv(f"1.1.{i}", rng.normal(size=DIM)) for i in range(1, 9)],
                     identity=MODEL)
    searched, changed = threading.Event(), threading.Event()
    query = np.ones(DIM, np.float32) / np.sqrt(DIM)

    def search() -> None:
        ix.ann(LevelValues.INSTANCE, query, 3)
        searched.set()

    def change() -> None:
        ix.add_instances([_iv("1.1.99", rng.normal(size=DIM))], identity=MODEL)
        changed.set()

    with ix._write_lock:  # a save in progress holds this lock, and only this one
        threading.Thread(target=search, daemon=True).start()
        assert searched.wait(30), "a search waited for the save"
        threading.Thread(target=change, daemon=True).start()
        assert not changed.wait(0.5), "a change went on during the save"
    assert changed.wait(30)
    ix.save()  # and a save after it all
    assert ix.count(LevelValues.INSTANCE) == 9
