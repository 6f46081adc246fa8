"""Several workers on one PostgreSQL queue: disjoint claims (threads and real processes),
every instance done exactly once; a claim handed back is redone and its late first
claimer can no longer complete it; two workers finishing instances of one series at once
both count in its mean."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from database import connect, transaction
from indexer import ensure_schema, queue
from indexer.index import IndexSet, InstanceVector

ROOT = Path(__file__).resolve().parents[2]
DIM = 16
MODEL = "local-dir:test@000000000001"


def _queued(url: str, n: int) -> list[str]:
    conn = connect(url)
    ensure_schema(conn)
    uids = [f"1.{i}" for i in range(n)]
    with transaction(conn):
        for uid in uids:
            queue.enqueue(conn, uid, f"dicom/{uid}.dcm")
    conn.close()
    return uids


def _attempts(url: str) -> dict[int, int]:
    conn = connect(url)
    return {int(a): int(n) for a, n in conn.execute(
        "SELECT attempts, count(*) FROM work GROUP BY attempts")}


def test_concurrent_claimers_take_disjoint_batches(postgres_url: str) -> None:
    uids = _queued(postgres_url, 600)
    start = threading.Barrier(4, timeout=60)

    def claimer(name: str) -> list[str]:
        conn = connect(postgres_url)
        mine: list[str] = []
        start.wait()
        while items := queue.claim(conn, 5, claimer=name):
            batch = [it.sop_instance_uid for it in items]
            assert queue.mark_done(conn, batch, claimer=name) == len(batch)
            mine += batch
        conn.close()
        return mine

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(claimer, f"w{i}") for i in range(4)]
        taken = [f.result(timeout=120) for f in futures]
    everything = [u for batch in taken for u in batch]
    assert len(everything) == len(set(everything)) == len(uids)
    assert set(everything) == set(uids)
    assert queue.counts(connect(postgres_url)).done == len(uids)
    assert _attempts(postgres_url) == {1: len(uids)}  # each claimed once


def test_two_worker_processes_do_each_instance_once(postgres_url: str, tmp_path: Path) -> None:
    uids = _queued(postgres_url, 1500)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.indexer._claimer_proc", postgres_url, name, str(go),
             "3"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("p1", "p2")
    ]
    go.touch()
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    claimed = [out.split() for out, _ in outputs]
    assert all(claimed), "each process claimed some"
    everything = [u for c in claimed for u in c]
    assert len(everything) == len(set(everything)) == len(uids)
    assert queue.counts(connect(postgres_url)).done == len(uids)
    assert _attempts(postgres_url) == {1: len(uids)}


def test_a_returned_claim_is_redone_and_the_late_worker_cannot_complete_it(
        postgres_url: str, tmp_path: Path) -> None:
    _queued(postgres_url, 3)
    conn = connect(postgres_url)
    ix = IndexSet.open(catalog=postgres_url, index_dir=tmp_path / "index", model_id=MODEL,
                       dim=DIM)
    first = queue.claim(conn, 2, claimer="dead")  # 1.0, 1.1
    assert [it.sop_instance_uid for it in first] == ["1.0", "1.1"]
    other = queue.claim(conn, 1, claimer="alive")  # 1.2
    assert queue.return_claims(conn, ["dead", "never-claimed"]) == 2
    assert queue.return_claims(conn, []) == 0
    again = queue.claim(conn, 5, claimer="heir")
    assert [(it.sop_instance_uid, it.attempts) for it in again] == [("1.0", 2), ("1.1", 2)]
    # the first claimer was not dead after all: too late, its results are not written
    vec = InstanceVector("1.0", "1", "1", np.ones(DIM, np.float32) / 4)
    assert ix.add_instances([vec], identity=MODEL, only_claimed=True, claimer="dead") == []
    assert queue.mark_done(conn, ["1.0", "1.1"], claimer="dead") == 0
    assert queue.mark_failed(conn, "1.1", "late", claimer="dead") == 0
    assert queue.counts(conn).in_progress == 3
    assert len(ix.add_instances([vec], identity=MODEL, only_claimed=True, claimer="heir")) == 1
    assert queue.mark_done(conn, ["1.0", "1.1"], claimer="heir") == 2
    assert queue.mark_done(conn, ["1.0"], claimer="heir") == 0  # once
    assert queue.mark_done(conn, [other[0].sop_instance_uid], claimer="alive") == 1
    assert queue.counts(conn).done == 3


def test_two_workers_finishing_one_series_both_count_in_its_mean(
        postgres_url: str, tmp_path: Path) -> None:
    sets = [IndexSet.open(catalog=postgres_url, index_dir=tmp_path / f"w{i}", model_id=MODEL,
                          dim=DIM) for i in range(2)]
    rng = np.random.default_rng(3)
    rounds = 12
    vecs = [[rng.normal(size=DIM).astype(np.float32) for _ in range(rounds)] for _ in range(2)]
    together = threading.Barrier(2, timeout=60)

    def worker(i: int) -> None:
        for r in range(rounds):
            together.wait()  # both finish an instance of the series at the same moment
            sets[i].add_instances([InstanceVector(f"1.1.{i}.{r}", "1.1", "1", vecs[i][r])],
                                  identity=MODEL)

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(worker, i) for i in range(2)]:
            f.result(timeout=120)
    units = [v / np.linalg.norm(v) for vs in vecs for v in vs]
    mean = np.mean(units, axis=0)
    expected = mean / np.linalg.norm(mean)
    series = sets[0].get_vector("series", "1.1")
    study = sets[0].get_vector("study", "1")
    assert series is not None and study is not None
    np.testing.assert_allclose(series, expected, atol=1e-5)
    np.testing.assert_allclose(study, expected, atol=1e-5)
    for ix in sets:  # each process' in-memory index, once it has followed the other's
        ix.follow_changes()
        assert (ix.count("instance"), ix.count("series"), ix.count("study")) == (24, 1, 1)


@pytest.mark.parametrize("claimer", [None, "w1"])
def test_the_embedded_worker_claims_unnamed(target: str | Path, claimer: str | None) -> None:
    """On either back end, a claim's outcome is written only by the same claimer."""
    conn = connect(target)
    ensure_schema(conn)
    with transaction(conn):
        queue.enqueue(conn, "2.1", "dicom/a.dcm")
    [item] = queue.claim(conn, 1, claimer=claimer)
    assert queue.claimed(conn, ["2.1"], claimer="someone-else") == set()
    assert queue.claimed(conn, ["2.1"], claimer=claimer) == {"2.1"}
    assert queue.mark_done(conn, [item.sop_instance_uid], claimer=claimer) == 1
