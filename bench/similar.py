"""Similar-case latency by stored study at 100,000 indexed instances, end to end.

A node is prepared with ``--studies`` studies (default 10,000) of ``--per-study``
instances (default 10: 100,000 instances), each with a 512-d unit vector (clustered
random vectors, the dimension of BiomedCLIP), series and study vectors derived as the
node derives them, and a catalog row for every object. The vectors and catalog rows
are written straight into the catalog (this benchmark is about query time, not
ingest); the node then starts as its own process (`precedent serve`, a small model
with a 512-d embedding so the stored vectors are its own), rebuilds its HNSW indexes
from the catalog and answers ``GET /dicom-web/studies/{study}/similar`` over HTTP.

Printed side by side, from the same run:

- the node, end to end over HTTP: ``…/similar?limit=10`` (own patient excluded, the
  default), and with ``Modality=CT`` as a filter;
- the peer: the earlier demos' approach, an exact numpy scan of all study vectors for
  the top 10 (in process, no HTTP, no catalog);
- the node's own QIDO-RS lookup of the same study (the HTTP floor).

Goal (issue 4): p99 under 25 ms end to end (the query's vector is stored: no model time).

    .venv/bin/python bench/similar.py [--studies 10000] [--per-study 10] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.index import IndexSet
from node.storage import connect
from tests._models import write_random_model_dir
from tests._peers import free_port

DIM = 512
MODALITIES = ("CT", "MR", "CR", "US")
TINY = Path(__file__).resolve().parents[1] / "tests" / "assets" / "models" / "tiny"


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _model_dir(folder: Path) -> Path:
    """The tiny test architecture with a 512-d embedding, random weights."""
    config = json.loads((TINY / "open_clip_config.json").read_text())
    config["model_cfg"]["embed_dim"] = DIM
    (folder / "cfg").mkdir(parents=True)
    (folder / "cfg" / "open_clip_config.json").write_text(json.dumps(config))
    return write_random_model_dir(folder / "cfg", folder / "model")


def _identity(model: Path) -> str:
    from indexer.embedder import load_embedder

    return load_embedder(name=f"local-dir:{model}", device="cpu", precision="fp32").identity


def prepare(data_dir: Path, identity: str, studies: int, per_study: int) -> np.ndarray:
    """Write catalog rows and vectors; return the study vectors (for the peer)."""
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(64, DIM)))
    conn = connect(data_dir / "catalog.sqlite")
    conn.execute("BEGIN")
    now = time.time()
    study_rows, series_rows, instance_rows, vectors = [], [], [], []
    study_vectors = np.empty((studies, DIM), dtype=np.float32)
    for s in range(studies):
        study = f"1.2.826.0.1.3680043.10.777.{s + 1}"
        series = f"{study}.1"
        patient = f"P{s // 3:06d}"
        modality = MODALITIES[s % len(MODALITIES)]
        date = f"{2015 + s % 10}{1 + s % 12:02d}{1 + s % 28:02d}"
        study_rows.append((study, patient, f"Bench^{patient}", date, f"A{s:07d}",
                           f"{modality} study", now, now, now))
        series_rows.append((series, study, modality, "CHEST"))
        centre = centres[s % len(centres)]
        inst = _unit(centre + 0.35 * rng.normal(size=(per_study, DIM)).astype(np.float32))
        for i in range(per_study):
            sop = f"{series}.{i + 1}"
            instance_rows.append((sop, series, study, "1.2.840.10008.5.1.4.1.1.2", str(i + 1),
                                  f"dicom/{study}/{series}/{sop}.dcm", 0, now))
            vectors.append(("instance", sop, series, study, patient, modality, "CHEST", date,
                            identity, inst[i].tobytes()))
        mean = _unit(inst.mean(axis=0))
        study_vectors[s] = mean
        vectors.append(("series", series, study, study, patient, modality, "CHEST", date,
                        identity, mean.tobytes()))
        vectors.append(("study", study, None, study, patient, modality, "CHEST", date,
                        identity, mean.tobytes()))
    conn.executemany(
        "INSERT INTO studies (study_instance_uid, patient_id, patient_name, study_date, "
        "accession_number, study_description, received_at, updated_at, stable_at) "
        "VALUES (?,?,?,?,?,?,?,?,?)", study_rows)
    conn.executemany(
        "INSERT INTO series (series_instance_uid, study_instance_uid, modality, "
        "body_part_examined) VALUES (?,?,?,?)", series_rows)
    conn.executemany(
        "INSERT INTO instances (sop_instance_uid, series_instance_uid, study_instance_uid, "
        "sop_class_uid, instance_number, path, size, received_at) VALUES (?,?,?,?,?,?,?,?)",
        instance_rows)
    conn.executemany(
        "INSERT INTO vectors (level, uid, parent_uid, study_instance_uid, patient_id, "
        "modality, body_part, study_date, model_id, vector) VALUES (?,?,?,?,?,?,?,?,?,?)",
        vectors)
    conn.executemany("INSERT OR REPLACE INTO index_meta VALUES (?, ?)",
                     [("model_id", identity), ("dim", str(DIM))])
    conn.execute("COMMIT")
    conn.close()
    return study_vectors


def _percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--per-study", type=int, default=10)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="precedent-similar-"))
    model = _model_dir(tmp)
    identity = _identity(model)
    t0 = time.perf_counter()
    study_vectors = prepare(tmp / "data", identity, args.studies, args.per_study)
    t1 = time.perf_counter()
    IndexSet.open(catalog=tmp / "data" / "catalog.sqlite", index_dir=tmp / "data" / "index",
                  model_id=identity, dim=DIM).save()
    t2 = time.perf_counter()
    n_instances = args.studies * args.per_study
    print(f"{args.studies} studies, {n_instances} instances, {DIM}-d vectors: catalog written "
          f"in {t1 - t0:.1f} s, HNSW (3 levels) built in {t2 - t1:.1f} s")

    port = free_port()
    node = subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--data-dir", str(tmp / "data"), "--host",
         "127.0.0.1", "--dimse-port", str(free_port()), "--http-port", str(port),
         "--model", f"local-dir:{model}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0",
             "PRECEDENT_LOG_LEVEL": "WARNING", "PRECEDENT_MODEL__PRECISION": "fp32"},
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if client.get("/health").json()["model"]["status"] == "ready":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("the node did not load its model")
        rng = np.random.default_rng(1)
        picks = rng.integers(0, args.studies, size=args.queries)
        uids = [f"1.2.826.0.1.3680043.10.777.{s + 1}" for s in picks]
        for uid in uids[:20]:  # warm up
            client.get(f"/dicom-web/studies/{uid}/similar")
        node_times, filtered_times, qido_times, peer_times = [], [], [], []
        for s, uid in zip(picks, uids, strict=True):
            t = time.perf_counter()
            r = client.get(f"/dicom-web/studies/{uid}/similar", params={"limit": 10})
            node_times.append(time.perf_counter() - t)
            assert r.status_code == 200 and len(r.json()) == 10, r.text[:300]
            t = time.perf_counter()
            r = client.get(f"/dicom-web/studies/{uid}/similar",
                           params={"limit": 10, "Modality": "CT"})
            filtered_times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text[:300]
            t = time.perf_counter()
            client.get("/dicom-web/studies", params={"StudyInstanceUID": uid})
            qido_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            scores = study_vectors @ study_vectors[s]
            top = np.argpartition(-scores, 11)[:11]
            top[np.argsort(-scores[top])]
            peer_times.append(time.perf_counter() - t)
    finally:
        node.terminate()
        node.wait(timeout=60)

    print(f"\n{'':44} {'p50 (ms)':>9} {'p99 (ms)':>9}")
    rows = [("node similar (HTTP, own patient excluded)", node_times),
            ("node similar + Modality=CT filter", filtered_times),
            ("node QIDO-RS of the same study (HTTP floor)", qido_times),
            (f"peer: exact numpy scan of {args.studies} studies", peer_times)]
    for name, times in rows:
        p50, p99 = _percentiles(times)
        print(f"{name:44} {p50:9.2f} {p99:9.2f}")
    n50, n99 = _percentiles(node_times)
    q50, q99 = _percentiles(qido_times)
    e50, e99 = _percentiles(peer_times)
    print(f"\nnode similar / QIDO floor: {n50 / q50:.2f}x (p50)  {n99 / q99:.2f}x (p99)")
    print(f"node similar / exact scan: {n50 / e50:.2f}x (p50)  {n99 / e99:.2f}x (p99)")
    print(f"goal: p99 < 25 ms end to end: {'met' if n99 < 25 else 'NOT met'} ({n99:.1f} ms)")


if __name__ == "__main__":
    main()
