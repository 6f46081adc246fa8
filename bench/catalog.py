"""The catalog on PostgreSQL against the embedded SQLite, and scaling out on one catalog.

Three measurements in one run, on one durable PostgreSQL (``fsync`` and synchronous
commits on, as a hospital's server runs; started by ``tests._postgres``):

1. ``ingest``: the same ``--instances`` CT instances (512² × 16 bit) through dcmtk
   ``storescu`` into one ``precedent serve`` on SQLite and one on PostgreSQL, over one
   association and then four; the indexer off (ingest alone). Instances/s and the ratio.
2. ``scale``: on PostgreSQL, one ``serve`` process fed by two ``storescu`` against two
   ``serve`` processes (one shared data folder, one catalog) fed by one ``storescu``
   each: the same load, the same files. Instances/s and the ratio. On this 2-core
   machine a second process adds a second GIL, not a second CPU.
3. ``similar``: a catalog of ``--studies`` × ``--per-study`` instances with 512-d
   vectors (``bench/similar.py``'s), on SQLite and copied to PostgreSQL with
   ``precedent catalog migrate`` (no re-embedding); one node on each answers
   ``GET …/studies/{uid}/similar?limit=10`` for the same random studies in turn.
   p50/p99 and the ratio.

    .venv/bin/python bench/catalog.py [--only ingest,scale,similar] [--instances 300]
                                      [--studies 10000 --per-study 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import _make, _send  # noqa: E402
from tests._peers import free_port, wait_for_port  # noqa: E402
from tests._postgres import PostgresServer, start_postgres  # noqa: E402

ENV = {"PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0", "PRECEDENT_LOG_LEVEL": "WARNING",
       "PRECEDENT_MODEL__PRECISION": "fp32", "HF_HUB_OFFLINE": "1"}


@contextmanager
def serve(data_dir: Path, catalog_url: str | None, *, model: str, index: bool,
          log: Path) -> Iterator[tuple[int, str]]:
    """A ``precedent serve`` subprocess; yields its DIMSE port and HTTP URL."""
    dimse, http = free_port(), free_port()
    env = {**os.environ, **ENV, "PRECEDENT_WORKER__ENABLED": "true" if index else "false"}
    if catalog_url:
        env["PRECEDENT_CATALOG__URL"] = catalog_url
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "serve", "--data-dir", str(data_dir), "--host",
             "127.0.0.1", "--dimse-port", str(dimse), "--http-port", str(http),
             "--allow-any-source", "--model", model],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_for_port(dimse, timeout=120)
        wait_for_port(http, timeout=120)
        yield dimse, f"http://127.0.0.1:{http}"
    finally:
        process.terminate()
        process.wait(timeout=60)


def _sum_send(targets: list[tuple[int, list[Path]]]) -> float:
    """Seconds for several storescu processes, each to its own port, run together."""
    start = time.perf_counter()
    procs = [subprocess.Popen(["storescu", "-aec", "PRECEDENT", "-aet", "BENCH", "127.0.0.1",
                               str(port), *map(str, files)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for port, files in targets]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - start


def bench_ingest(tmp: Path, pg: PostgresServer, n: int) -> None:
    model = "local-dir:/no-model-for-this-benchmark"
    results: dict[str, tuple[float, float]] = {}
    for name, url in (("SQLite", None), ("PostgreSQL", pg.create_database())):
        one, four = _make(n, tmp / f"{name}-1", 11), _make(n, tmp / f"{name}-4", 12)
        with serve(tmp / f"ingest-{name}", url, model=model, index=False,
                   log=tmp / f"ingest-{name}.log") as (port, _):
            results[name] = (n / _send(port, "PRECEDENT", one, 1),
                             n / _send(port, "PRECEDENT", four, 4))
    print(f"\ningest of {n} CT instances (512x512x16 bit), storescu, indexer off")
    print(f"{'catalog':12} {'1 assoc (inst/s)':>18} {'4 assoc (inst/s)':>18}")
    for name, (a, b) in results.items():
        print(f"{name:12} {a:18.1f} {b:18.1f}")
    (s1, s4), (p1, p4) = results["SQLite"], results["PostgreSQL"]
    print(f"PostgreSQL / SQLite: {p1 / s1:.2f}x (1 assoc)  {p4 / s4:.2f}x (4 assoc)")


def bench_scale(tmp: Path, pg: PostgresServer, n: int) -> None:
    model = "local-dir:/no-model-for-this-benchmark"
    halves = [_make(n // 2, tmp / "scale-a", 21), _make(n // 2, tmp / "scale-b", 22)]
    again = [_make(n // 2, tmp / "scale-c", 23), _make(n // 2, tmp / "scale-d", 24)]
    url = pg.create_database()
    root = tmp / "scale-root"
    with serve(root, url, model=model, index=False, log=tmp / "scale-1.log") as (port, _):
        one = n / _sum_send([(port, halves[0]), (port, halves[1])])
    with serve(root, url, model=model, index=False, log=tmp / "scale-2a.log") as (p1, _), \
            serve(root, url, model=model, index=False, log=tmp / "scale-2b.log") as (p2, _):
        two = n / _sum_send([(p1, again[0]), (p2, again[1])])
    print(f"\nscale-out on one PostgreSQL catalog: {n} CT instances, two storescu at once")
    print(f"one serve process : {one:8.1f} inst/s")
    print(f"two serve processes: {two:8.1f} inst/s   two / one: {two / one:.2f}x")


def _migrate(data_dir: Path, url: str, log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run([sys.executable, "-m", "node", "catalog", "migrate", "--data-dir",
                               str(data_dir), "--to", url], stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, **ENV}, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the migration failed: see {log}")


def _latencies(url: str, uids: list[str]) -> list[float]:
    client = httpx.Client(base_url=url, timeout=60)
    deadline = time.monotonic() + 600
    while client.get("/health").json()["model"]["status"] != "ready":
        if time.monotonic() > deadline:
            raise RuntimeError("the node did not load its model")
        time.sleep(0.3)
    for uid in uids[:20]:
        client.get(f"/dicom-web/studies/{uid}/similar", params={"limit": 10})
    times = []
    for uid in uids:
        t = time.perf_counter()
        r = client.get(f"/dicom-web/studies/{uid}/similar", params={"limit": 10})
        times.append(time.perf_counter() - t)
        if r.status_code != 200 or len(r.json()) != 10:
            raise RuntimeError(f"similar answered {r.status_code}: {r.text[:300]}")
    return times


def bench_similar(tmp: Path, pg: PostgresServer, studies: int, per_study: int,
                  queries: int) -> None:
    import shutil

    from bench.similar import DIM, _identity, _model_dir, prepare
    from indexer.index import IndexSet

    model = _model_dir(tmp / "similar-model")
    identity = _identity(model)
    data = tmp / "similar-sqlite"
    t = time.perf_counter()
    prepare(data, identity, studies, per_study)
    IndexSet.open(catalog=data / "catalog.sqlite", index_dir=data / "index",
                  model_id=identity, dim=DIM).save()
    built = time.perf_counter() - t
    pg_data = tmp / "similar-postgresql"
    shutil.copytree(data, pg_data)
    (pg_data / "catalog.sqlite").unlink()
    url = pg.create_database()
    t = time.perf_counter()
    _migrate(data, url, tmp / "migrate.log")
    moved = time.perf_counter() - t
    print(f"\nsimilar at {studies * per_study} instances ({studies} studies, {DIM}-d): "
          f"built in {built:.0f} s, migrated to PostgreSQL in {moved:.0f} s")
    rng = np.random.default_rng(1)
    uids = [f"1.2.826.0.1.3680043.10.777.{s + 1}" for s in rng.integers(0, studies, queries)]
    results = {}
    for name, folder, catalog in (("SQLite", data, None), ("PostgreSQL", pg_data, url)):
        with serve(folder, catalog, model=f"local-dir:{model}", index=True,
                   log=tmp / f"similar-{name}.log") as (_, http):
            ms = np.asarray(_latencies(http, uids)) * 1000
            results[name] = (float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))
    print(f"{'catalog':12} {'p50 (ms)':>9} {'p99 (ms)':>9}")
    for name, (p50, p99) in results.items():
        print(f"{name:12} {p50:9.1f} {p99:9.1f}")
    (s50, s99), (g50, g99) = results["SQLite"], results["PostgreSQL"]
    print(f"PostgreSQL / SQLite latency: {g50 / s50:.2f}x (p50)  {g99 / s99:.2f}x (p99)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="ingest,scale,similar")
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--per-study", type=int, default=10)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="precedent-catalog-"))
    print(f"work folder {tmp}")
    pg = start_postgres(durable=True)
    try:
        if "ingest" in parts:
            bench_ingest(tmp, pg, args.instances)
        if "scale" in parts:
            bench_scale(tmp, pg, args.instances)
        if "similar" in parts:
            bench_similar(tmp, pg, args.studies, args.per_study, args.queries)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
