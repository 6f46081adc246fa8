"""Query latency under mixed load: the node's similar-case and QIDO-RS answers while it
ingests and indexes, against Orthanc's QIDO-RS under the same ingest load.

The node holds ``--studies`` studies of ``--per-study`` instances (default 10,000 ×
10: 100,000 instances with 512-d vectors, prepared as ``bench/similar.py`` prepares
them) and runs as its own process (``precedent serve``, a small 512-d model, the worker
on). Orthanc (Debian's, DICOMweb plugin, default SQLite settings) holds the same
10,000 studies, one instance each (same UIDs, patients, names, dates, accession
numbers). Each server is then measured in its own phase of ``--seconds``, one after the
other, under the same load:

- ingest: dcmtk ``storescu`` sends new CT instances (``--size``² × 16 bit) in one
  association per second, and ``--stow-threads`` threads STOW-RS one instance per
  request; together ``--rate`` instances/s (half each), paced, from a separate process;
- on the node the indexer worker embeds what arrives (as it would);
- ``--query-threads`` threads query without pause: on the node each alternates
  ``GET …/studies/{uid}/similar?limit=10`` (a random stored study) and a QIDO-RS study
  search; on Orthanc each runs the QIDO-RS searches only. The QIDO-RS searches are the
  same on both (PatientID, StudyInstanceUID, PatientName wildcard, a month of
  StudyDate with ``limit=50``).

Printed: p50/p99 of node similar, node QIDO-RS and Orthanc QIDO-RS, the ratios, the
ingest rates achieved (storescu and STOW-RS separately) and how much the node indexed
meanwhile. Goals (issue 9): node similar p99 ≤ 100 ms, node QIDO-RS p99 ≤ Orthanc's.

``--cache DIR`` keeps the prepared catalog (vectors, HNSW files) and Orthanc's loaded
storage between runs (they take minutes to build); each run works on a copy.
``--py-spy FILE`` records the node with py-spy during its phase (``py-spy`` on PATH).
``--node-from DIR`` runs the node from another checkout (a before/after comparison on
the same prepared data: ``--node-from /path/to/main``).

    .venv/bin/python bench/mixed_load.py [--seconds 60] [--rate 40] [--cache /tmp/mixed]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.similar import _identity, _model_dir, prepare  # noqa: E402
from indexer.index import IndexSet  # noqa: E402
from tests._peers import free_port, start_orthanc  # noqa: E402
from tests._synthetic import ct_instance, to_bytes  # noqa: E402

MODALITIES = ("CT", "MR", "CR", "US")  # as bench/similar.py assigns them
STUDY_ROOT = "1.2.826.0.1.3680043.10.777"
NEW_ROOT = "1.2.826.0.1.3680043.10.888"


# --------------------------------------------------------------------------- preparing


def _study_attributes(s: int) -> dict[str, str]:
    """Study ``s`` as bench/similar.py's ``prepare`` writes it into the node's catalog."""
    patient = f"P{s // 3:06d}"
    return {"study": f"{STUDY_ROOT}.{s + 1}", "patient": patient, "name": f"Bench^{patient}",
            "modality": MODALITIES[s % len(MODALITIES)],
            "date": f"{2015 + s % 10}{1 + s % 12:02d}{1 + s % 28:02d}",
            "accession": f"A{s:07d}"}


def _orthanc_instance(s: int) -> bytes:
    a = _study_attributes(s)
    ds = ct_instance(study_uid=a["study"], series_uid=f"{a['study']}.1", patient_id=a["patient"],
                     modality=a["modality"], study_date=a["date"], size=8, seed=s)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{a['study']}.1.1"
    ds.PatientName, ds.AccessionNumber = a["name"], a["accession"]
    ds.StudyDescription = f"{a['modality']} study"
    return to_bytes(ds)


def _prepare_node(folder: Path, args: argparse.Namespace) -> Path:
    """The model folder; the catalog and indexes under ``folder/data``."""
    model = _model_dir(folder)
    identity = _identity(model)
    start = time.perf_counter()
    prepare(folder / "data", identity, args.studies, args.per_study)
    IndexSet.open(catalog=folder / "data" / "catalog.sqlite",
                  index_dir=folder / "data" / "index", model_id=identity, dim=512).save()
    print(f"node: {args.studies} studies, {args.studies * args.per_study} instances prepared "
          f"and indexed in {time.perf_counter() - start:.0f} s", flush=True)
    return model


def _load_orthanc(base: str, studies: int) -> None:
    start = time.perf_counter()
    with httpx.Client(base_url=base, timeout=120) as http:
        def post(s: int) -> None:
            http.post("/instances", content=_orthanc_instance(s),
                      headers={"Content-Type": "application/dicom"}).raise_for_status()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, range(studies)))
    print(f"Orthanc: {studies} studies loaded in {time.perf_counter() - start:.0f} s",
          flush=True)


def _ingest_files(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` new CT instances (10 per study, new UIDs), written once for both servers."""
    folder.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().int % 10**8
    paths = []
    for i in range(count):
        study = f"{NEW_ROOT}.{run}.{i // 10 + 1}"
        ds = ct_instance(study_uid=study, series_uid=f"{study}.1", patient_id=f"N{i // 10:06d}",
                         instance_number=i % 10 + 1, size=size, seed=i)
        path = folder / f"{i:06d}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- the load


def _stow_body(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--\r\n".encode())
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def _feed(dicomweb: str, dimse_port: int, called: str, scu_files: list[str],
          stow_files: list[str], rate: float, threads: int, seconds: float,
          counts: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """The ingest load, in a process of its own: storescu once a second with half the rate,
    ``threads`` STOW-RS threads with the other half, for ``seconds``."""
    deadline = time.monotonic() + seconds
    stored = {"storescu": 0, "stow": 0, "stow_failed": 0}
    lock = threading.Lock()

    def storescu() -> None:
        per_second = max(1, round(rate / 2))
        position = 0
        tick = time.monotonic()
        while time.monotonic() < deadline and position < len(scu_files):
            batch = scu_files[position:position + per_second]
            position += len(batch)
            done = subprocess.run(["storescu", "-aec", called, "-aet", "BENCHSCU", "127.0.0.1",
                                   str(dimse_port), *batch], capture_output=True)
            if done.returncode == 0:
                with lock:
                    stored["storescu"] += len(batch)
            tick += 1.0
            time.sleep(max(0.0, tick - time.monotonic()))

    def stow(mine: list[str]) -> None:
        interval = threads / max(rate / 2, 0.001)
        tick = time.monotonic()
        with httpx.Client(timeout=60) as http:
            for path in mine:
                if time.monotonic() >= deadline:
                    break
                body, content_type = _stow_body(Path(path).read_bytes())
                answer = http.post(f"{dicomweb}/studies", content=body,
                                   headers={"Content-Type": content_type,
                                            "Accept": "application/dicom+json"})
                with lock:
                    stored["stow" if answer.status_code == 200 else "stow_failed"] += 1
                tick += interval
                time.sleep(max(0.0, tick - time.monotonic()))

    workers = [threading.Thread(target=storescu)] + [
        threading.Thread(target=stow, args=(stow_files[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    counts.put(stored)


def _qido_plan(rng: random.Random, studies: int) -> list[dict[str, str]]:
    s = rng.randrange(studies)
    a = _study_attributes(s)
    year, month = 2015 + rng.randrange(10), 1 + rng.randrange(12)
    return [
        {"PatientID": a["patient"]},
        {"StudyInstanceUID": a["study"]},
        {"PatientName": f"Bench^P{rng.randrange(max(1, studies // 30)):05d}*"},
        {"StudyDate": f"{year}{month:02d}01-{year}{month:02d}28", "limit": "50"},
    ]


@dataclass
class Latencies:
    similar: list[float] = field(default_factory=list)
    qido: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _query(dicomweb: str, studies: int, threads: int, seconds: float,
           similar: bool) -> Latencies:
    """``threads`` threads querying without pause for ``seconds``."""
    out = Latencies()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=dicomweb, timeout=60,
                          headers={"Accept": "application/dicom+json"}) as http:
            while time.monotonic() < deadline:
                jobs: list[tuple[str, Callable[[], httpx.Response]]] = []
                if similar:
                    uid = f"{STUDY_ROOT}.{rng.randrange(studies) + 1}"
                    jobs.append(("similar", lambda uid=uid: http.get(  # type: ignore[misc]
                        f"/studies/{uid}/similar", params={"limit": "10"})))
                params = rng.choice(_qido_plan(rng, studies))
                # Orthanc's plugin does not percent-decode values: send them as they are
                query = "&".join(f"{k}={v}" for k, v in params.items())
                jobs.append(("qido", lambda q=query: http.get(f"/studies?{q}")))  # type: ignore[misc]
                for kind, call in jobs:
                    start = time.perf_counter()
                    answer = call()
                    elapsed = time.perf_counter() - start
                    with lock:
                        if answer.status_code != 200:
                            out.errors.append(f"{kind} {answer.status_code} {answer.text[:100]}")
                        getattr(out, kind).append(elapsed)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return out


@dataclass
class Phase:
    name: str
    latencies: Latencies
    stored: dict[str, int]
    seconds: float
    indexed: int | None = None


def _phase(name: str, dicomweb: str, dimse_port: int, called: str, files: list[Path],
           args: argparse.Namespace, *, similar: bool,
           indexed: Callable[[], int] | None = None) -> Phase:
    half = len(files) // 2
    counts: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()  # type: ignore[type-arg]
    feeder = multiprocessing.get_context("spawn").Process(
        target=_feed, args=(dicomweb, dimse_port, called, [str(f) for f in files[:half]],
                            [str(f) for f in files[half:]], args.rate, args.stow_threads,
                            args.seconds + 5, counts))
    before = indexed() if indexed else None
    feeder.start()
    time.sleep(5)  # the ingest is under way before anything is measured
    start = time.monotonic()
    latencies = _query(dicomweb, args.studies, args.query_threads, args.seconds, similar)
    elapsed = time.monotonic() - start
    feeder.join()
    stored = counts.get()
    done = indexed() - before if indexed and before is not None else None
    return Phase(name, latencies, stored, elapsed + 5, done)


# --------------------------------------------------------------------------- reporting


def _p(values: list[float]) -> tuple[float, float]:
    ms = np.asarray(values) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _report(node: Phase, orthanc: Phase) -> None:
    print(f"\n{'':40} {'n':>6} {'p50 (ms)':>9} {'p99 (ms)':>9}")
    for label, values in [("node similar (GET …/studies/{uid}/similar)", node.latencies.similar),
                          ("node QIDO-RS /studies", node.latencies.qido),
                          ("Orthanc QIDO-RS /studies", orthanc.latencies.qido)]:
        p50, p99 = _p(values)
        print(f"{label:40} {len(values):6d} {p50:9.1f} {p99:9.1f}")
    s99 = _p(node.latencies.similar)[1]
    n50, n99 = _p(node.latencies.qido)
    o50, o99 = _p(orthanc.latencies.qido)
    print(f"\nOrthanc QIDO / node QIDO: {o50 / n50:.2f}x (p50)  {o99 / n99:.2f}x (p99)"
          "  (above 1: the node is faster)")
    print(f"goal node similar p99 <= 100 ms: {'met' if s99 <= 100 else 'NOT met'} ({s99:.0f} ms)")
    print(f"goal node QIDO p99 <= Orthanc's: {'met' if n99 <= o99 else 'NOT met'} "
          f"({n99:.0f} vs {o99:.0f} ms)")
    print("\ningest achieved (instances/s):")
    for phase in (node, orthanc):
        s = phase.stored
        print(f"  {phase.name:8} storescu {s['storescu'] / phase.seconds:5.1f}   STOW-RS "
              f"{s['stow'] / phase.seconds:5.1f}   (STOW failures {s['stow_failed']})")
    if node.indexed is not None:
        print(f"  node indexed {node.indexed} instances during its phase "
              f"({node.indexed / node.seconds:.1f}/s)")
    for phase in (node, orthanc):
        if phase.latencies.errors:
            print(f"  {phase.name} errors: {len(phase.latencies.errors)}, e.g. "
                  f"{phase.latencies.errors[0]}")


# --------------------------------------------------------------------------- main


def _start_node(folder: Path, model: Path,
                checkout: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    http_port, dimse_port = free_port(), free_port()
    log = (folder / "node.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--data-dir", str(folder / "data"), "--host",
         "127.0.0.1", "--dimse-port", str(dimse_port), "--http-port", str(http_port),
         "--model", f"local-dir:{model}", "--allow-any-source"],
        stdout=log, stderr=subprocess.STDOUT, cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout), "PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0",
             "PRECEDENT_MODEL__PRECISION": "fp32", "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).json()["model"]["status"] == "ready":
                return process, url, dimse_port
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the node did not start: see {folder / 'node.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--per-study", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=40.0,
                        help="instances/s ingested (half storescu, half STOW-RS)")
    parser.add_argument("--size", type=int, default=256, help="rows and columns of a new CT")
    parser.add_argument("--stow-threads", type=int, default=4)
    parser.add_argument("--query-threads", type=int, default=8)
    parser.add_argument("--cache", type=Path, help="keep the prepared data here")
    parser.add_argument("--py-spy", type=Path, help="record the node's phase to this file")
    parser.add_argument("--node-from", type=Path, default=ROOT,
                        help="the checkout the node runs from (default: this one)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="precedent-mixed-"))
    cache = args.cache or tmp / "cache"
    node_cache = cache / f"node-{args.studies}x{args.per_study}"
    if not (node_cache / "data" / "index").is_dir():
        shutil.rmtree(node_cache, ignore_errors=True)
        _prepare_node(node_cache, args)
    shutil.copytree(node_cache, tmp / "node")
    model = tmp / "node" / "model"
    files = _ingest_files(tmp / "ingest", int(args.rate * (args.seconds + 10)), args.size)

    orthanc_cache = cache / f"orthanc-{args.studies}"
    if not orthanc_cache.is_dir():
        loader = start_orthanc(tmp / "orthanc-load")
        try:
            _load_orthanc(loader.http_url, args.studies)
        finally:
            loader.stop()
        shutil.copytree(loader.folder / "storage", orthanc_cache)
    storage = tmp / "orthanc-storage"
    shutil.copytree(orthanc_cache, storage)
    orthanc = start_orthanc(tmp / "orthanc", extra_config={
        "StorageDirectory": str(storage), "IndexDirectory": str(storage)})
    node, url, dimse_port = _start_node(tmp / "node", model, args.node_from.resolve())
    spy = None
    try:
        http = httpx.Client(base_url=url, timeout=30)

        def indexed() -> int:
            return int(http.get("/health").json()["queue"]["by_state"]["done"])

        _query(f"{url}/dicom-web", args.studies, 2, 5, similar=True)  # warm up
        _query(orthanc.dicomweb_url, args.studies, 2, 5, similar=False)
        print(f"node from {args.node_from}, pid {node.pid}; measuring {args.seconds:.0f} s per server, "
              f"{args.rate:.0f} instances/s ingested, {args.query_threads} query threads",
              flush=True)
        if args.py_spy:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(node.pid), "--duration",
                                    str(int(args.seconds + 5)), "--output", str(args.py_spy),
                                    "--format", "speedscope", "--threads", "--nonblocking"])
        node_phase = _phase("node", f"{url}/dicom-web", dimse_port, "PRECEDENT", files, args,
                            similar=True, indexed=indexed)
        orthanc_phase = _phase("Orthanc", orthanc.dicomweb_url, orthanc.dimse_port,
                               orthanc.aet, files, args, similar=False)
        _report(node_phase, orthanc_phase)
    finally:
        if spy is not None:
            spy.wait(timeout=120)
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
        orthanc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
