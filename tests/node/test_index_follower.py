"""The serving process' follower thread (``node/indexing.py``): on a shared catalog its
indexes apply what another process' worker adds and deletes, without a rebuild; and each
serving process keeps its index files in a folder of its own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from indexer.index import IndexSet, InstanceVector
from node.indexing import Indexing
from node.runtime import ModelState, index_dir
from node.settings import load_settings

DIM = 8
MODEL = "local-dir:test@000000000001"


def _iv(uid: str, vec: np.ndarray) -> InstanceVector:
    return InstanceVector(uid, "1.1", "1", (vec / np.linalg.norm(vec)).astype(np.float32))


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30  # generous: this waits for an outcome, never times it
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def test_the_follower_applies_another_process_changes(postgres_url: str,
                                                      tmp_path: Path) -> None:
    worker_side = IndexSet.open(catalog=postgres_url, index_dir=tmp_path / "worker",
                                model_id=MODEL, dim=DIM)
    serving = IndexSet.open(catalog=postgres_url, index_dir=tmp_path / "serve",
                            model_id=MODEL, dim=DIM)
    model = ModelState()
    model.set_ready(SimpleNamespace(identity=MODEL), serving)  # type: ignore[arg-type]
    stop = threading.Event()
    indexing = Indexing(SimpleNamespace(model=model), stop,  # type: ignore[arg-type]
                        loader=lambda *a, **k: None, retry_s=1.0,  # type: ignore[arg-type,return-value]
                        spawn=lambda name, fn: threading.Thread(target=fn))
    thread = threading.Thread(target=indexing.follow, args=(0.05,))
    thread.start()
    try:
        rng = np.random.default_rng(0)
        worker_side.add_instances([_iv(f"1.1.{i}", rng.normal(size=DIM)) for i in range(5)],
                                  identity=MODEL)
        _until(lambda: serving.count("instance") == 5, "the five instances followed")
        assert serving.count("series") == serving.count("study") == 1
        worker_side.delete_instance("1.1.0")
        _until(lambda: serving.count("instance") == 4, "the deletion followed")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_each_serving_process_has_its_own_index_folder(tmp_path: Path) -> None:
    embedded = load_settings(None, {"node": {"data_dir": str(tmp_path)}})
    assert index_dir(embedded) == tmp_path / "index"
    shared = load_settings(None, {"node": {"data_dir": str(tmp_path)}, "http": {"port": 8123},
                                  "catalog": {"url": "postgresql://db.example/precedent"}})
    assert index_dir(shared) == tmp_path / "index" / f"{socket.gethostname()}-8123"
