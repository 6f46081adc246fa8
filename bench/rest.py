"""REST latency: QIDO-RS study search, the node vs Orthanc's DICOMweb plugin.

The same synthetic catalog (``--studies``, default 10,000 studies of one small CT, MR,
US or CR instance each, varied patients, dates and accession numbers) is loaded into the
node (through its one durable ingest path from four threads, before it starts) and into
Orthanc (Debian package with its DICOMweb plugin, default SQLite settings, REST
``POST /instances`` from four threads). Both then serve as separate processes on this machine and answer
the same QIDO-RS study searches, interleaved, one at a time:

- ``PatientID`` exact, ``StudyInstanceUID`` exact, ``AccessionNumber`` exact;
- ``PatientName`` wildcard (``Test^P0123*``: ten patients);
- ``StudyDate`` range of one month with ``limit=50``;
- ``ModalitiesInStudy=MR`` with ``limit=25``.

Prints p50/p99 per server and query kind and the ratios (Orthanc / node: above 1 means
the node is faster), plus the load times. Goal (issue 4): at most Orthanc's latency.

    /work/venv/bin/python bench/rest.py [--studies 10000] [--rounds 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._peers import free_port, start_orthanc
from tests._synthetic import ct_instance, to_bytes

MODALITIES = ("CT", "MR", "US", "CR")


def synthetic(n: int) -> list[tuple[str, str, str, bytes]]:
    """``n`` one-instance studies: (study uid, patient id, accession, Part 10 bytes)."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        patient = f"P{i // 3:05d}"  # three studies per patient
        study = f"1.2.826.0.1.3680043.10.543.{i + 1}"
        date = f"{2015 + i % 10}{1 + (i // 10) % 12:02d}{1 + i % 28:02d}"
        ds = ct_instance(study_uid=study, series_uid=f"{study}.1", patient_id=patient,
                         modality=MODALITIES[i % len(MODALITIES)], study_date=date,
                         size=8, seed=i)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{study}.1.1"
        ds.AccessionNumber = f"A{i:07d}"
        ds.StudyTime = f"{rng.randrange(24):02d}{rng.randrange(60):02d}00"
        out.append((study, patient, ds.AccessionNumber, to_bytes(ds)))
    return out


def load_node(data_dir: Path, catalog: list[tuple[str, str, str, bytes]]) -> float:
    from node.settings import load_settings
    from node.storage import Ingest

    settings = load_settings(None, {"node": {"data_dir": data_dir}})
    ingest = Ingest(data_dir=data_dir, catalog=settings.catalog_target)
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:  # as four senders would
        list(pool.map(lambda item: ingest.store(item[3], source="BENCH"), catalog))
    return time.perf_counter() - start


def start_node(data_dir: Path, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    http_port, dimse_port = free_port(), free_port()
    log = (folder / "node.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--http-port", str(http_port), "--dimse-port", str(dimse_port),
         "--model", "local-dir:/nonexistent"],
        stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
        env={"PRECEDENT_WORKER__ENABLED": "false", "PRECEDENT_LOG_LEVEL": "WARNING",
             "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code < 500:
                return process, f"{url}/dicom-web"
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the node did not start: see {folder / 'node.log'}")


def load_orthanc(base: str, catalog: list[tuple[str, str, str, bytes]]) -> float:
    start = time.perf_counter()
    with httpx.Client(base_url=base, timeout=60) as http:
        def post(item: tuple[str, str, str, bytes]) -> None:
            http.post("/instances", content=item[3],
                      headers={"Content-Type": "application/dicom"}).raise_for_status()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, catalog))
    return time.perf_counter() - start


def queries(catalog: list[tuple[str, str, str, bytes]], rounds: int,
            ) -> list[tuple[str, dict[str, str]]]:
    rng = random.Random(11)
    out = []
    for _ in range(rounds):
        study, patient, accession, _ = rng.choice(catalog)
        prefix = f"Test^P{rng.randrange(len(catalog) // 30):04d}*"
        year, month = 2015 + rng.randrange(10), 1 + rng.randrange(12)
        out += [
            ("PatientID", {"PatientID": patient}),
            ("StudyInstanceUID", {"StudyInstanceUID": study}),
            ("AccessionNumber", {"AccessionNumber": accession}),
            ("PatientName wildcard", {"PatientName": prefix}),
            ("StudyDate month, limit 50", {"StudyDate": f"{year}{month:02d}01-"
                                                        f"{year}{month:02d}31",
                                           "limit": "50"}),
            ("ModalitiesInStudy, limit 25", {"ModalitiesInStudy": "MR", "limit": "25"}),
        ]
    return out


def measure(clients: dict[str, httpx.Client], plan: list[tuple[str, dict[str, str]]],
            ) -> dict[str, dict[str, list[float]]]:
    """Interleave the servers query by query; seconds per query kind and server."""
    times: dict[str, dict[str, list[float]]] = {name: {} for name in clients}
    for kind, params in plan:
        for name, client in clients.items():
            # Orthanc's plugin does not percent-decode values: send * and ^ as they are
            query = "&".join(f"{k}={v}" for k, v in params.items())
            start = time.perf_counter()
            response = client.get(f"/studies?{query}",
                                  headers={"Accept": "application/dicom+json"})
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            if not response.json() and kind != "ModalitiesInStudy, limit 25":
                raise RuntimeError(f"{name} found nothing for {kind} {params}")
            times[name].setdefault(kind, []).append(elapsed)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(times: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{'QIDO-RS /studies':32} {'Orthanc p50':>12} {'node p50':>9} {'ratio':>6}"
          f" {'Orthanc p99':>12} {'node p99':>9} {'ratio':>6}")
    kinds = list(times["orthanc"])
    rows: list[tuple[str, Callable[[str], list[float]]]] = [
        (k, lambda n, k=k: times[n][k]) for k in kinds]  # type: ignore[misc]
    rows.append(("all queries", lambda n: [t for k in kinds for t in times[n][k]]))
    for label, get in rows:
        o, n = get("orthanc"), get("node")
        o50, n50 = statistics.median(o) * 1e3, statistics.median(n) * 1e3
        o99, n99 = percentile(o, 0.99) * 1e3, percentile(n, 0.99) * 1e3
        print(f"{label:32} {o50:10.2f}ms {n50:7.2f}ms {o50 / n50:5.1f}x"
              f" {o99:10.2f}ms {n99:7.2f}ms {o99 / n99:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=50, help="queries of each kind")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="precedent-bench-rest-"))
    print(f"making {args.studies} synthetic studies …", flush=True)
    catalog = synthetic(args.studies)
    node_load = load_node(folder / "node", catalog)
    print(f"node:    {args.studies} studies stored in {node_load:.1f} s "
          f"({args.studies / node_load:.0f}/s, durable ingest path, 4 threads)", flush=True)
    orthanc = start_orthanc(folder)
    node_process = None
    try:
        orthanc_load = load_orthanc(orthanc.http_url, catalog)
        print(f"Orthanc: {args.studies} studies stored in {orthanc_load:.1f} s "
              f"({args.studies / orthanc_load:.0f}/s, REST POST /instances, 4 threads)",
              flush=True)
        node_process, node_url = start_node(folder / "node", folder)
        clients = {"orthanc": httpx.Client(base_url=orthanc.dicomweb_url, timeout=60),
                   "node": httpx.Client(base_url=node_url, timeout=60)}
        measure(clients, queries(catalog, 3))  # warm both up
        times = measure(clients, queries(catalog, args.rounds))
        report(times)
    finally:
        if node_process is not None:
            node_process.terminate()
            node_process.wait(timeout=20)
        orthanc.stop()


if __name__ == "__main__":
    main()
