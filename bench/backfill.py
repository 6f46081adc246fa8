"""Backfill throughput: the node's backfill against dcmtk ``movescu``, the same studies
from the same Orthanc in the same run.

Orthanc (Debian package) is loaded with ``--studies`` CT studies of ``--instances``
256×256 16-bit images each, dated over a few weeks. Then, each into a fresh node
(``precedent serve``, durable ingest, no indexing):

- ``movescu``: one association, one query file per study (Study Root, STUDY level), every
  study moved to the node: the peer's figure;
- ``precedent backfill start`` over the study dates, ``--concurrency 1`` (like for like:
  one association) and ``--concurrency 4``: C-FIND by date window, SERIES-level C-FIND per
  study, comparison with the catalog, C-MOVE to the node, the plan in the catalog.

As a reference, ``movescu`` also moves the studies to dcmtk's ``storescp`` (a C++
receiver without a catalog). Prints instances/second and the ratio backfill / movescu.

    .venv/bin/python bench/backfill.py [--studies 30] [--instances 10]

Goal (issue 12): backfill ≥ 0.9× movescu into the same node.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.data_folder import stored_admin_token
from tests._peers import free_port, start_orthanc, start_storescp, wait_for_port
from tests._synthetic import ct_instance, to_bytes

AET = "PRECEDENT"


def _load(orthanc, n_studies: int, per_study: int) -> list[str]:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    studies, items = [], []
    for i in range(n_studies):
        study, series = generate_uid(), generate_uid()
        studies.append(study)
        date = f"202301{1 + i % 28:02d}"
        items += [to_bytes(ct_instance(study_uid=study, series_uid=series,
                                       patient_id=f"BENCH{i:04d}", size=256,
                                       instance_number=j + 1, study_date=date,
                                       seed=i * 100 + j))
                  for j in range(per_study)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: orthanc.upload(items[k::4]), range(4)))
    return studies


def _query_files(studies: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for uid in studies:
        ds = Dataset()
        ds.QueryRetrieveLevel, ds.StudyInstanceUID = "STUDY", uid
        path = folder / f"{uid}.dcm"
        ds.save_as(path, implicit_vr=True, little_endian=True)
        paths.append(path)
    return paths


def _node(data_dir: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    dimse, http = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--data-dir", str(data_dir), "--host",
         "127.0.0.1", "--dimse-port", str(dimse), "--http-port", str(http),
         "--allow-any-source", "--model", "local-dir:/no-model-for-this-benchmark"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0",
             "PRECEDENT_LOG_LEVEL": "WARNING", "PRECEDENT_WORKER__ENABLED": "false",
             "PRECEDENT_BACKFILL__POLL_S": "0.05"})
    wait_for_port(dimse, timeout=60)
    wait_for_port(http, timeout=60)
    return process, dimse, http


def _declare(orthanc, port: int, aet: str) -> None:  # type: ignore[no-untyped-def]
    with orthanc.client() as client:
        client.put(f"/modalities/{aet.lower()}", json=[aet, "127.0.0.1", port]
                   ).raise_for_status()


def _movescu(orthanc, queries: list[Path], move_to: str) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = subprocess.run(["movescu", "-S", "-aet", "MOVESCU", "-aec", orthanc.aet,
                             "-aem", move_to, "127.0.0.1", str(orthanc.dimse_port),
                             *map(str, queries)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"movescu failed: {result.stderr[-800:]}")
    return elapsed


def _count(http_port: int) -> int:
    answer = httpx.get(f"http://127.0.0.1:{http_port}/dicom-web/instances",
                       params={"limit": 100000}, timeout=60)
    return len(answer.json()) if answer.status_code == 200 else 0


def _movescu_into_node(orthanc, queries: list[Path], tmp: Path, expected: int) -> float:  # type: ignore[no-untyped-def]
    node, dimse, http = _node(tmp / "node-movescu")
    try:
        _declare(orthanc, dimse, AET)
        elapsed = _movescu(orthanc, queries, AET)
        got = _count(http)
        if got != expected:
            raise RuntimeError(f"movescu brought {got} of {expected} instances")
        return elapsed
    finally:
        node.terminate()
        node.wait()


def _backfill(orthanc, tmp: Path, expected: int, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    data_dir = tmp / f"node-backfill-{concurrency}"
    env = {**os.environ}
    subprocess.run([sys.executable, "-m", "node", "ae", "destination", "add", orthanc.aet,
                    "127.0.0.1", str(orthanc.dimse_port), "--data-dir", str(data_dir)],
                   check=True, capture_output=True, env=env)
    node, dimse, http = _node(data_dir)
    try:
        _declare(orthanc, dimse, AET)
        token = stored_admin_token(data_dir)  # the node made it at its first start
        with httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            start = time.time()
            job = client.post("/admin/backfill", json={
                "source": orthanc.aet, "since": "2023-01-01", "until": "2023-01-31",
                "concurrency": concurrency})
            job.raise_for_status()
            while True:  # asked seldom: the status route runs in the node being measured
                time.sleep(0.5)
                status = client.get(f"/admin/backfill/{job.json()['id']}").json()
                if status["state"] != "running":
                    break
            elapsed = status["finished_at"] - start  # the node's own record of the end
        if status["instances"]["received"] != expected or status["studies"]["failed"]:
            raise RuntimeError(f"the backfill ended short: {status}")
        return elapsed
    finally:
        node.terminate()
        node.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=30)
    parser.add_argument("--instances", type=int, default=10, help="per study")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="precedent-bench-backfill-"))
    n = args.studies * args.instances
    orthanc = start_orthanc(tmp / "orthanc")
    try:
        studies = _load(orthanc, args.studies, args.instances)
        queries = _query_files(studies, tmp / "queries")
        print(f"{args.studies} studies × {args.instances} CT instances (256×256×16 bit) in "
              f"Orthanc {orthanc.aet}; best of {args.rounds}")
        times: dict[str, float] = {}
        for r in range(args.rounds):
            scp = start_storescp(tmp / f"scp{r}", aet="STORESCP")
            try:
                _declare(orthanc, scp.port, "STORESCP")
                t = _movescu(orthanc, queries, "STORESCP")
            finally:
                scp.stop()
            times["movescu → storescp (reference)"] = min(
                t, times.get("movescu → storescp (reference)", t))
            for name, run in (
                ("movescu → node", lambda r=r: _movescu_into_node(
                    orthanc, queries, tmp / f"r{r}", n)),
                ("backfill, 1 association", lambda r=r: _backfill(orthanc, tmp / f"r{r}", n, 1)),
                ("backfill, 4 associations", lambda r=r: _backfill(orthanc, tmp / f"r{r}", n, 4)),
            ):
                t = run()
                times[name] = min(t, times.get(name, t))
    finally:
        orthanc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'':34} {'seconds':>8} {'inst/s':>8}")
    for name, t in times.items():
        print(f"{name:34} {t:8.2f} {n / t:8.1f}")
    peer = times["movescu → node"]
    print(f"\nbackfill / movescu (same node): {peer / times['backfill, 1 association']:.2f}× "
          f"(1 association), {peer / times['backfill, 4 associations']:.2f}× (4)   goal ≥ 0.9×")


if __name__ == "__main__":
    main()
