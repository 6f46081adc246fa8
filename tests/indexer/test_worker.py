"""The queue worker, end to end on real files with the tiny model; and kill-and-restart
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from database import Connection, connect, transaction
from indexer import LevelValues, ensure_schema, queue
from indexer.embedder import Embedder
from indexer.errors import ModelMismatch
from indexer.index import IndexSet, InstanceVector
from indexer.sampling import VolumeSampling
from indexer.search import SearchFilters, search
from indexer.worker import Worker
from tests.indexer._dicom import PYDICOM_FILES, ct_pattern, grey_dataset, sr_dataset, write

ROOT = Path(__file__).resolve().parents[2]
Target = str | Path


def _archive(catalog: Target, data_dir: Path, n_studies: int, per_study: int = 2) -> list[str]:
    """Write synthetic CT studies under data_dir/dicom and queue them; returns SOP UIDs."""
    conn = connect(catalog)
    ensure_schema(conn)
    uids: list[str] = []
    with transaction(conn):
        _write_studies(conn, data_dir, n_studies, per_study, uids)
    conn.close()
    return uids


def _write_studies(conn: Connection, data_dir: Path, n_studies: int, per_study: int,
                   uids: list[str]) -> None:
    for s in range(n_studies):
        study, series = f"1.2.{s}", f"1.2.{s}.1"
        for i in range(per_study):
            sop = f"1.2.{s}.1.{i}"
            ds = grey_dataset(
                ct_pattern(seed=s * 10 + i, kind=s), bits_stored=12, sop_uid=sop,
                study_uid=study, series_uid=series, patient_id=f"P{s}",
                RescaleIntercept=-1024, RescaleSlope=1,
            )
            rel = f"dicom/{study}/{series}/{sop}.dcm"
            write(ds, data_dir / rel)
            queue.enqueue(conn, sop, rel)
            uids.append(sop)


def _queue_file(catalog: Target, sop: str, rel: str) -> None:
    conn = connect(catalog)
    with transaction(conn):
        queue.enqueue(conn, sop, rel)
    conn.close()


def _open(catalog: Target, data_dir: Path, embedder: Embedder) -> IndexSet:
    return IndexSet.open(
        catalog=catalog, index_dir=data_dir / "index",
        model_id=embedder.identity, dim=embedder.dim,
    )


def test_a_batch_of_good_and_bad_instances(tmp_path: Path, target: Target,
        tiny_embedder: Embedder) -> None:
    uids = _archive(target, tmp_path, n_studies=4)
    write(sr_dataset(sop_uid="9.1"), tmp_path / "dicom/sr.dcm")
    _queue_file(target, "9.1", "dicom/sr.dcm")
    shutil.copy(PYDICOM_FILES / "MR_truncated.dcm", tmp_path / "dicom/trunc.dcm")
    _queue_file(target, "9.2", "dicom/trunc.dcm")
    (tmp_path / "dicom/notdicom.dcm").write_bytes(b"hello, not DICOM" * 20)
    _queue_file(target, "9.3", "dicom/notdicom.dcm")
    _queue_file(target, "9.4", "dicom/missing.dcm")  # never arrives: transient, then failed

    index_set = _open(target, tmp_path, tiny_embedder)
    worker = Worker(
        catalog=target, data_dir=tmp_path, embedder=tiny_embedder,
        index_set=index_set, batch_size=5, max_attempts=3, backoff_s=0.0,
        sampling=VolumeSampling.every_slice(),  # each CT slice embedded as it comes
    )
    processed = [worker.run_once() for _ in range(8)]
    assert processed == [5, 5, 2, 1, 1, 0, 0, 0]  # the missing file, tried three times
    c = queue.counts(connect(target))
    assert (c.done, c.skipped, c.failed, c.pending) == (len(uids), 1, 3, 0)
    [skip] = c.skipped_reasons
    assert skip.startswith("not an image for retrieval (SOP class Basic Text SR Storage")
    reasons = " | ".join(c.failed_reasons)
    assert "undecodable" in reasons and "not a DICOM file" in reasons
    assert "cannot read" in reasons and "(after 3 attempts)" in reasons
    assert index_set.count("instance") == len(uids) and index_set.count("study") == 4
    # a stored study finds itself, and studies with the same pattern are neighbours
    v = index_set.get_vector(LevelValues.STUDY, "1.2.0")
    assert v is not None
    hits = search(index_set, v, level=LevelValues.STUDY, k=2)
    assert hits[0].uid == "1.2.0" and hits[0].best_instance_uid in {"1.2.0.1.0", "1.2.0.1.1"}
    other = search(index_set, v, level="study", k=4, filters=SearchFilters(exclude_patient_id="P0"))
    assert "1.2.0" not in {h.uid for h in other} and len(other) == 3
    worker.close()


def test_run_with_decode_processes_until_stopped(tmp_path: Path, target: Target,
        tiny_embedder: Embedder) -> None:
    uids = _archive(target, tmp_path, n_studies=5)
    index_set = _open(target, tmp_path, tiny_embedder)
    worker = Worker(
        catalog=target, data_dir=tmp_path, embedder=tiny_embedder,
        index_set=index_set, batch_size=3, decode_processes=1, poll_interval_s=0.05,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))  # built here, run there
    thread.start()
    conn = connect(target)
    deadline = time.monotonic() + 60
    while queue.counts(conn).done < len(uids) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    worker.close()
    assert not thread.is_alive()
    assert queue.counts(conn).done == len(uids)
    assert (tmp_path / "index" / "instance.usearch").exists()  # saved on stop
    again = IndexSet(catalog=target, index_dir=tmp_path / "index")
    assert again.load_or_rebuild() == [] and again.count("instance") == len(uids)


def test_a_worker_refuses_an_index_of_another_model(tmp_path: Path, target: Target,
        tiny_embedder: Embedder) -> None:
    index_set = IndexSet.open(catalog=target, index_dir=tmp_path / "index")
    vec = InstanceVector("1.1.1", "1.1", "1", __import__("numpy").ones(4, "float32"))
    index_set.add_instances([vec], identity="another-model@ffff")
    with pytest.raises(ModelMismatch, match="another-model@ffff"):
        Worker(catalog=target, data_dir=tmp_path, embedder=tiny_embedder,
               index_set=index_set)


def test_worker_arguments_are_validated(tmp_path: Path, target: Target,
        tiny_embedder: Embedder) -> None:
    index_set = IndexSet(catalog=target, index_dir=tmp_path / "index")
    for kwargs, word in (({"batch_size": 0}, "batch_size"), ({"decode_processes": -1},
                         "decode_processes"), ({"max_attempts": 0}, "max_attempts")):
        with pytest.raises(ValueError, match=word):
            Worker(catalog=target, data_dir=tmp_path, embedder=tiny_embedder,
                   index_set=index_set, **kwargs)  # type: ignore[arg-type]


def _run_proc(catalog: Target, data_dir: Path, model_dir: Path, processes: int,
              claimer: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.indexer._worker_proc", str(catalog), str(data_dir),
         str(model_dir), str(processes), claimer],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_killed_and_restarted_nothing_lost_nothing_doubled(tmp_path: Path, target: Target,
        tiny_dir: Path) -> None:
    uids = _archive(target, tmp_path, n_studies=30, per_study=2)
    proc = _run_proc(target, tmp_path, tiny_dir, 0)
    assert proc.stdout is not None
    batches = 0
    for line in proc.stdout:  # wait until it is well under way, then kill it hard
        batches += line.startswith("batch")
        if batches >= 5:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    conn = connect(target)
    mid = queue.counts(conn)
    assert 0 < mid.done < len(uids), mid  # killed mid-way

    proc = _run_proc(target, tmp_path, tiny_dir, 1)  # restart, with a decode process this time
    _out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    c = queue.counts(conn)
    assert c.done == len(uids) and c.total == len(uids), c
    rows = conn.execute(
        "SELECT level, count(*), count(DISTINCT uid) FROM vectors GROUP BY level"
    ).fetchall()
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        "instance": (60, 60), "series": (30, 30), "study": (30, 30)
    }
    stored = {u for (u,) in conn.execute("SELECT uid FROM vectors WHERE level='instance'")}
    assert stored == set(uids)
    reopened = IndexSet.open(catalog=target, index_dir=tmp_path / "index")
    assert reopened.count("instance") == 60 and reopened.count("study") == 30
