"""Volumes, not slices: how soon a CT study is searchable, how many a day one node indexes,
and what the series index costs in f16 against i8 — each beside today's figure, one run.

    python bench/volumes.py                          # everything (about 6 minutes, 2 cores)
    python bench/volumes.py --studies 2 --series-vectors 50000

The study: synthetic CT, 4 series × 300 slices of 512×512, 16-bit, with positions along
the slice axis, stored through the node's one ingest path (``Ingest.store``: file, fsync,
catalog and queue in one transaction), in process. The model: BiomedCLIP's architecture
(ViT-B/16 + PubMedBERT, random weights written from tests/assets/models/biomedclip, loaded
through ``local-dir:``). *Today's path* embeds on torch with bf16 autocast (where the CPU
has it); *the new path* on the engine the node picks by default (``[model] engine =
"auto"``: OpenVINO int8 behind its fidelity check, else what it falls back to; the export
is made once before timing, as a node does at its first start). The worker as the node
runs it (one decode process, batches of 32).

(a) study-to-searchable latency: from the study-stable event (fired as soon as the last
    slice is stored; the node's own monitor fires it ``stable_after_s`` later, the same
    work follows) until ``GET …/studies/{uid}/similar`` answers with every series indexed.
    *Today's path* (every slice embedded, ``slices_per_series = 0``) is measured on one
    series of 300 slices with the worker started at the stable event (no head start), and
    multiplied by 4: its work is linear in slices. *The new path* (16 slices per series)
    on the whole study, twice: with the worker running while the slices arrive (it reads
    their headers then, as a node does) and, conservatively, started at the stable event.
(b) sustained rate: ``--studies`` such studies stored back to back with the worker running,
    each declared stable once stored; studies a day = 86,400 s ÷ the time per study,
    storing included (both share the two cores).
(c) the series index: usearch HNSW (cosine, M 16, ef_construction 128) of
    ``--series-vectors`` low-rank unit 512-d vectors (bench/index.py's ``lowrank``), f16
    against i8: memory (scaled linearly to 1,000,000) and recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def row(name: str, peer: str, peer_v: float, ours_v: float, unit: str, lower_better: bool,
        word: str = "") -> None:
    ratio = peer_v / ours_v if lower_better else ours_v / peer_v
    word = word or ("faster" if lower_better else "more")
    print(f"  {name:<40} {peer:<16} {peer_v:>10.1f}  ours {ours_v:>10.1f} {unit:<12}"
          f" {ratio:6.1f}× {word}")


# -- the study ---------------------------------------------------------------------------


def ct_study(n_series: int, slices: int, *, seed: int) -> tuple[str, list[bytes]]:
    """A synthetic CT study: ``n_series`` axial series of ``slices`` 512² 16-bit slices."""
    from pydicom.uid import generate_uid

    from tests._synthetic import ct_instance, to_bytes

    rng = np.random.default_rng(seed)
    study, patient = generate_uid(), f"BENCH{seed:04d}"
    y, x = np.mgrid[0:512, 0:512] / 512.0
    out = []
    template = ct_instance(study_uid=study, series_uid=generate_uid(), patient_id=patient,
                           size=512, seed=seed)
    for s in range(n_series):
        series = generate_uid()
        for i in range(slices):
            z = i / slices
            body = ((x - 0.5) ** 2 / (0.16 + 0.05 * z) + (y - 0.5) ** 2 / 0.12) < 1
            organ = ((x - 0.4 - 0.1 * s) ** 2 + (y - 0.45) ** 2) < 0.01 + 0.02 * np.sin(3 * z)
            hu = np.where(body, 40.0, -1000.0) + 300.0 * organ
            stored = np.clip(hu + 1024 + rng.normal(0, 15, (512, 512)), 0, 4095)
            ds = copy.deepcopy(template)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series, s + 1, i + 1
            ds.ImagePositionPatient = [-250.0, -250.0, -600.0 + 1.25 * i]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelData = stored.astype(np.uint16).tobytes()
            out.append(to_bytes(ds))
    return study, out


# -- a node's parts, in process ------------------------------------------------------------


class Node:
    """The storage, the index, the worker and the REST app of one data folder."""

    def __init__(self, folder: Path, model: Path, embedder: Any, slices_per_series: int) -> None:
        from fastapi.testclient import TestClient

        from indexer.worker import Worker
        from node.runtime import open_index, volume_sampling
        from node.settings import load_settings
        from node.storage import connect
        from node.supervisor import build_services
        from node.web import create_app

        self.settings = load_settings(None, {
            "node": {"data_dir": folder, "free_space_reserve_mb": 0},
            "model": {"path": model},
            "indexer": {"slices_per_series": slices_per_series, "series_quiet_s": 3600},
        })
        self.services = build_services(self.settings)
        self.index_set = open_index(self.settings, embedder)
        self.services.model.set_ready(embedder, self.index_set)
        self.client = TestClient(create_app(self.services))
        w = self.settings.worker
        self.conn = connect(self.settings.db_path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker = Worker(
            catalog=self.settings.catalog_target, data_dir=folder, embedder=embedder,
            index_set=self.index_set, sampling=volume_sampling(self.settings),
            batch_size=w.batch_size, decode_processes=w.decode_processes,
            poll_interval_s=0.05, save_interval_s=3600)

    def start_worker(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.worker.run, args=(self._stop,))
        self._thread.start()

    def pause_worker(self) -> None:
        """Stop the worker's loop (its decode processes stay, as in a running node)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def store(self, study: list[bytes]) -> float:
        t = time.perf_counter()
        for data in study:
            self.services.ingest.store(data, source="BENCH")
        return time.perf_counter() - t

    def stable(self) -> float:
        """The study-stable event for everything stored (what the monitor calls)."""
        from node.storage.stability import mark_stable_studies

        mark_stable_studies(self.conn, 0.0, time.time())
        return time.perf_counter()

    def searchable(self, study_uid: str, *, alone: bool = False) -> float:
        """Wait until the study has nothing waiting and answers "similar by this study"
        with cases (``alone``: with an answer, empty when no other study is there)."""
        from indexer import queue

        sops = [r[0] for r in self.conn.execute(
            "SELECT sop_instance_uid FROM instances WHERE study_instance_uid = ?", (study_uid,))]
        while True:
            if queue.counts(self.conn, sops).waiting == 0:
                answer = self.client.get(f"/dicom-web/studies/{study_uid}/similar",
                                         params={"limit": 5})
                if answer.status_code == 200 and (alone or answer.json()):
                    return time.perf_counter()
            time.sleep(0.05)

    def counts(self, study_uid: str) -> Any:
        from indexer import queue

        sops = [r[0] for r in self.conn.execute(
            "SELECT sop_instance_uid FROM instances WHERE study_instance_uid = ?", (study_uid,))]
        return queue.counts(self.conn, sops)

    def close(self) -> None:
        self.pause_worker()
        self.worker.close()


def _with_priors(node: Node) -> None:
    """Two small prior studies of other patients, indexed first: the cases to find."""
    node.start_worker()
    for seed in (100, 101):
        uid, data = ct_study(1, 4, seed=seed)
        node.store(data)
        node.stable()
        node.searchable(uid, alone=True)
    node.pause_worker()


def latency(tmp: Path, model: Path, embedder: Any, k: int, study: tuple[str, list[bytes]], *,
            during_arrival: bool) -> tuple[float, float, Any]:
    node = Node(tmp, model, embedder, k)
    _with_priors(node)
    if during_arrival:
        node.start_worker()
    stored_s = node.store(study[1])
    t0 = node.stable()
    if not during_arrival:
        node.start_worker()
    t1 = node.searchable(study[0])
    counts = node.counts(study[0])
    node.close()
    return t1 - t0, stored_s, counts


def bare_rate(embedder: Any, seconds: float = 4.0) -> float:
    """The model alone on ready tensors, batch 8 (images/s): the reference of this run."""
    import torch

    x = torch.randn(8, 3, embedder.image_size, embedder.image_size)
    embedder.embed_tensor(x)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        embedder.embed_tensor(x)
        done += 8
    return done / (time.perf_counter() - start)


def bench_latency(tmp: Path, model: Path, today_embedder: Any, embedder: Any) -> float:
    print("(a) study-to-searchable latency, from the stable event (s)")
    print(f"  the model alone in this run: {bare_rate(today_embedder):.1f} images/s on "
          f"{today_embedder.engine}, {bare_rate(embedder):.1f} on {embedder.engine} (batch 8)")
    one_series = ct_study(1, 300, seed=1)
    today, stored, c = latency(tmp / "today", model, today_embedder, 0, one_series,
                               during_arrival=False)
    print(f"  today's path, 1 series × 300 slices: {today:.1f} s ({c.done} embedded; "
          f"stored in {stored:.1f} s)")
    study = ct_study(4, 300, seed=2)
    new_live, stored, c = latency(tmp / "live", model, embedder, 16, study, during_arrival=True)
    print(f"  new path, worker running while the 1,200 slices arrive: {new_live:.1f} s "
          f"({c.done} embedded, {c.not_sampled} not sampled; stored in {stored:.1f} s)")
    new_cold, _, _ = latency(tmp / "cold", model, embedder, 16, study, during_arrival=False)
    print(f"  new path, worker started at the stable event: {new_cold:.1f} s")
    row("4 × 300 slices (today: 4 × the one series)", "every slice", 4 * today, new_live, "s",
        lower_better=True)
    row("  the same, worker started at the event", "every slice", 4 * today, new_cold, "s",
        lower_better=True)
    print(f"  goal ≤ 15 s: {'met' if max(new_live, new_cold) <= 15 else 'NOT met'}")
    return 4 * today


def bench_sustained(tmp: Path, model: Path, embedder: Any, n: int, today_s: float) -> None:
    print(f"(b) sustained: {n} studies of 4 × 300 slices stored back to back, worker running")
    studies = [ct_study(4, 300, seed=10 + i) for i in range(n)]
    node = Node(tmp / "sustained", model, embedder, 16)
    _with_priors(node)
    node.start_worker()
    t0 = time.perf_counter()
    stored = 0.0
    for _, data in studies:
        stored += node.store(data)
        node.stable()
    for uid, _ in studies:
        node.searchable(uid)
    per_study = (time.perf_counter() - t0) / n
    node.close()
    print(f"  {per_study:.1f} s a study, storing included ({stored / n:.1f} s of it storing)")
    row("studies a day, one node", "every slice", 86400 / (today_s + stored / n),
        86400 / per_study, "studies/day", lower_better=False)
    print(f"  goal ≥ 2,000 a day: {'met' if 86400 / per_study >= 2000 else 'NOT met'}")


def bench_memory(n: int, queries: int) -> None:
    from usearch.index import Index

    from bench.index import unit_vectors

    print(f"(c) series index: {n:,} low-rank unit 512-d vectors, cosine, M 16")
    rng = np.random.default_rng(0)
    x, q = unit_vectors("lowrank", n, 512, rng), unit_vectors("lowrank", queries, 512, rng)
    sims = q @ x.T
    truth = np.argsort(-sims, axis=1)[:, :10]
    found: dict[str, float] = {}
    for dtype in ("f16", "i8"):
        index = Index(ndim=512, metric="cos", dtype=dtype, connectivity=16, expansion_add=128)
        t = time.perf_counter()
        index.add(np.arange(n, dtype=np.uint64), x, threads=os.cpu_count() or 1)
        build = time.perf_counter() - t
        found[dtype] = index.memory_usage / 2**20 * 1_000_000 / n
        recalls = []
        for ef in (64, 256):
            index.expansion_search = ef
            hits = index.search(q, 10, threads=os.cpu_count() or 1)
            recalls.append(np.mean([len(set(hits.keys[i].tolist()) & set(truth[i].tolist()))
                                    for i in range(queries)]) / 10)
        print(f"  {dtype}: {found[dtype]:,.0f} MiB per 1M vectors (scaled from {n:,}), "
              f"recall@10 {recalls[0]:.3f} at ef 64 (the node's default), {recalls[1]:.3f} at "
              f"ef 256 (exact search: 1.000); built in {build:.0f} s")
    row("memory per 1M series vectors", "f16", found["f16"], found["i8"], "MiB",
        lower_better=True, word="less")
    print("  instance vectors per 1,200-slice study: 1,200 today, 64 sampled (18.8× fewer)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=3, help="studies for (b)")
    ap.add_argument("--series-vectors", type=int, default=100_000, help="vectors for (c)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-sustained", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    import torch

    from indexer.embedder import load_embedder
    from tests._models import write_random_model_dir

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"cuda {'yes' if torch.cuda.is_available() else 'no'}")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if not (args.skip_latency and args.skip_sustained):
            model = write_random_model_dir(ROOT / "tests/assets/models/biomedclip", tmp / "model")
            today_embedder = load_embedder(path=model)  # torch, autocast where it helps
            embedder = load_embedder(  # as the node loads it: [model] engine = "auto"
                path=model, engine="auto", cache_dir=tmp / "engines",
                on_progress=lambda line: print(f"  ({line})", flush=True))
            print(f"model: BiomedCLIP architecture, random weights, {embedder.device}; "
                  f"today's path on {today_embedder.engine}, the new one on {embedder.engine}")
            today = 0.0
            if not args.skip_latency:
                today = bench_latency(tmp, model, today_embedder, embedder)
            if not args.skip_sustained:
                if not today:
                    today = 4 * latency(tmp / "today", model, today_embedder, 0,
                                        ct_study(1, 300, seed=1), during_arrival=False)[0]
                bench_sustained(tmp, model, embedder, args.studies, today)
        if not args.skip_memory:
            bench_memory(args.series_vectors, args.queries)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
