"""Indexer benchmarks: each figure beside its peer, measured in the same run, and the ratio.

    python bench/index.py                 # all three parts, 1,000,000 vectors for usearch
    python bench/index.py --vectors 200000 --skip-embed

(a) decode + normalise per core (one process, one thread) on synthetic 512×512 CT
    (uncompressed and JPEG 2000 lossless) and a 2000×2500 radiograph; the peer is bare
    pydicom (``dcmread`` + ``pixel_array``). "worker stage" adds the downscale to the
    model's input size that the worker does before handing pixels over.
(b) embedding on this machine's device with the tiny test model (random weights): the
    whole worker pipeline (queue → triage → decode → normalise → embed → index, with
    decode processes; every image embedded, no volume sampling) against the bare model
    forward on ready tensors. With ``--biomedclip`` on a CPU, BiomedCLIP's architecture at
    random weights through the embedder as a node loads it: torch fp32, torch bf16 and the
    CPU engine (OpenVINO int8 and bf16), images/s and cosine to fp32 (``bench/cpu_engine.py
    --only-embedder`` prints the same table); when CUDA is present, its bare forward fp32
    vs autocast.
(c) usearch HNSW (cosine, f16 by default, connectivity 16, expansion_add 128 — the index
    defaults): build time, memory, single-query p50/p99 and recall@10 against exact numpy
    search (the peer) for several ``expansion_search``, on two sets of unit 512-d vectors:
    ``random`` (isotropic Gaussian: every direction equally likely, so the 10th neighbour
    is barely closer than a random point — the worst case for any graph index, and slow to
    build) and ``lowrank`` (a 32-d latent space mapped to 512-d plus noise, closer to how
    image embeddings spread). On 2 shared cores the default 1,000,000 random vectors take
    hours to build; use ``--vectors`` to scale down.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = ROOT / "tests" / "assets" / "models"


def row(name: str, peer: str, peer_v: float, ours_v: float, unit: str, higher_better: bool = True) -> None:
    ratio = ours_v / peer_v if peer_v else float("nan")
    note = "ours/peer" if higher_better else "ours/peer (lower is better)"
    print(f"  {name:<44} {peer:<18} {peer_v:>10.1f}  ours {ours_v:>10.1f} {unit:<10} ratio {ratio:5.2f} ({note})")


def rate(fn: Callable[[], object], n_items: int, min_s: float = 1.5) -> float:
    """Items per second of ``fn`` (which handles ``n_items``), repeated for ``min_s``."""
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        fn()
        done += n_items
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            return done / elapsed


# -- (a) decode + normalise -----------------------------------------------------------


def _ct_files(folder: Path, n: int) -> tuple[list[Path], list[Path]]:
    from pydicom.uid import JPEG2000Lossless

    from tests.indexer._dicom import grey_dataset, write

    rng = np.random.default_rng(0)
    plain, j2k = [], []
    y, x = np.mgrid[0:512, 0:512] / 512
    for i in range(n):
        hu = 900 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) * 6) - 900 + rng.normal(0, 25, (512, 512))
        stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
        ds = grey_dataset(stored, bits_stored=12, RescaleIntercept=-1024, RescaleSlope=1,
                          WindowCenter=40, WindowWidth=400)
        plain.append(write(ds, folder / f"ct{i}.dcm"))
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        j2k.append(write(ds, folder / f"ct{i}_j2k.dcm"))
    return plain, j2k


def _radiograph(folder: Path) -> Path:
    from tests.indexer._dicom import grey_dataset, write

    rng = np.random.default_rng(1)
    stored = rng.integers(200, 3800, (2500, 2000)).astype(np.uint16)
    ds = grey_dataset(stored, bits_stored=12, photometric="MONOCHROME1", modality="CR")
    return write(ds, folder / "cr.dcm")


def bench_decode(folder: Path) -> None:
    import pydicom

    from indexer.normalise import normalise_dataset
    from indexer.stages import decode_and_normalise

    print("(a) decode + normalise, one core (images/s)")
    plain, j2k = _ct_files(folder, 8)
    cr = [_radiograph(folder)]
    for label, files in (("CT 512x512 uncompressed", plain), ("CT 512x512 JPEG 2000", j2k),
                         ("CR 2000x2500 uncompressed", cr)):
        def peer(files: list[Path] = files) -> None:
            for f in files:
                pydicom.dcmread(f).pixel_array  # noqa: B018

        def ours(files: list[Path] = files) -> None:
            for f in files:
                normalise_dataset(pydicom.dcmread(f))

        def stage(files: list[Path] = files) -> None:
            for f in files:
                decode_and_normalise("1", str(f), 224)

        p = rate(peer, len(files))
        row(f"{label}: normalise", "pydicom decode", p, rate(ours, len(files)), "img/s")
        row(f"{label}: worker stage (+resize)", "pydicom decode", p, rate(stage, len(files)), "img/s")


# -- (b) embedding --------------------------------------------------------------------


def _pipeline_rate(emb: object, folder: Path, n_images: int, batch: int) -> tuple[float, int]:
    """Images/s through the whole worker (queue → triage → decode processes → normalise →
    embed → index) on ``n_images`` 512×512 CT images, every one embedded; and the number
    of decode processes."""
    import database
    from indexer import ensure_schema, queue
    from indexer.index import IndexSet
    from indexer.sampling import VolumeSampling
    from indexer.worker import Worker
    from tests.indexer._dicom import ct_pattern, grey_dataset, write

    data = folder / "data"
    conn = database.connect(data / "catalog.sqlite")
    ensure_schema(conn)
    with database.transaction(conn):
        for i in range(n_images + batch):
            rel = f"dicom/{i}.dcm"
            ds = grey_dataset(ct_pattern(i, size=512, kind=i), bits_stored=12,
                              sop_uid=f"1.9.{i}", study_uid=f"1.9.{i // 4}",
                              series_uid=f"1.9.{i // 4}.1")
            write(ds, data / rel)
            queue.enqueue(conn, f"1.9.{i}", rel)
    index_set = IndexSet.open(catalog=data / "catalog.sqlite", index_dir=data / "index",
                              model_id=emb.identity, dim=emb.dim)  # type: ignore[attr-defined]
    processes = max(1, (os.cpu_count() or 2) - 1)
    worker = Worker(catalog=data / "catalog.sqlite", data_dir=data, embedder=emb,  # type: ignore[arg-type]
                    index_set=index_set, batch_size=batch, decode_processes=processes,
                    poll_interval_s=0.01, save_interval_s=3600,
                    sampling=VolumeSampling.every_slice())  # every image, as before sampling
    worker.run_once()  # start the decode processes (and warm the model) outside the timing
    stop = threading.Event()
    start = time.perf_counter()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    while queue.counts(conn).waiting > 0:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    worker.close()
    return (queue.counts(conn).done - batch) / elapsed, processes


def bench_embed(folder: Path, biomedclip: bool, n_images: int) -> None:
    import torch

    from indexer.embedder import load_embedder
    from tests._models import write_random_model_dir

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"(b) embedding on {device} (images/s)")
    tiny = write_random_model_dir(MODELS / "tiny", folder / "tiny")
    emb = load_embedder(path=tiny, device=device, batch_size=64)
    batch = torch.randn(64, 3, emb.image_size, emb.image_size)
    bare = rate(lambda: emb.embed_tensor(batch), 64)
    through, processes = _pipeline_rate(emb, folder / "tiny-run", n_images, 64)
    row(f"tiny model, pipeline ({processes} decode proc.)", "bare forward", bare, through,
        "img/s")
    print(f"  {'':<44} (the pipeline/bare gap is decoding 512x512 CT on {os.cpu_count()} cores;"
          " the tiny model itself is nearly free)")

    if biomedclip and device == "cpu":
        # through the embedder, as a node loads it: torch fp32 / bf16 and the CPU engine
        from bench.cpu_engine import embedder_table, test_pictures

        folder_b = write_random_model_dir(MODELS / "biomedclip", folder / "biomedclip")
        embedder_table(folder_b, test_pictures()[0], rounds=8)
    elif device == "cuda":
        folder_b = write_random_model_dir(MODELS / "biomedclip", folder / "biomedclip")
        bs = 64 if device == "cuda" else 8
        x = torch.randn(bs, 3, 224, 224)
        fp32 = load_embedder(path=folder_b, device=device, precision="fp32", batch_size=bs)
        base = rate(lambda: fp32.embed_tensor(x), bs, min_s=3)
        del fp32
        amp = load_embedder(path=folder_b, device=device, precision="auto", batch_size=bs)
        precision = amp.autocast_dtype and amp.autocast_dtype.value
        bare_amp = rate(lambda: amp.embed_tensor(x), bs, min_s=3)
        row(f"BiomedCLIP arch, bare forward, batch {bs}", "fp32", base, bare_amp,
            f"img/s {precision}")
        # the same model through the worker (decode processes feeding it), with AMP
        n = n_images if device == "cuda" else min(n_images, 64)
        piped, processes = _pipeline_rate(amp, folder / "biomedclip-run", n, bs)
        row(f"BiomedCLIP arch, through the worker ({processes} dec.)", f"bare {precision}",
            bare_amp, piped, f"img/s {precision}")


# -- (c) usearch ------------------------------------------------------------------------


def unit_vectors(kind: str, n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors: ``random`` (isotropic: intrinsic dimension = dim, the worst case for
    any graph index) or ``lowrank`` (a 32-d latent space mapped to ``dim`` plus 10% noise,
    closer to how image embeddings spread)."""
    out = np.empty((n, dim), np.float32)
    basis = np.random.default_rng(42).standard_normal((32, dim), dtype=np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        if kind == "random":
            chunk = rng.standard_normal((m, dim), dtype=np.float32)
        else:
            z = rng.standard_normal((m, 32), dtype=np.float32)
            chunk = z @ basis + 0.1 * np.sqrt(32) * rng.standard_normal((m, dim), dtype=np.float32)
        out[i : i + m] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def bench_usearch(n: int, dim: int, dtype: str, queries: int, kind: str) -> None:
    from usearch.index import Index

    print(f"(c) usearch HNSW, {n:,} {kind} unit {dim}-d vectors, {dtype}, cosine")
    rng = np.random.default_rng(0)
    x = unit_vectors(kind, n, dim, rng)
    q = unit_vectors(kind, queries, dim, rng)

    index = Index(ndim=dim, metric="cos", dtype=dtype, connectivity=16, expansion_add=128)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    index.add(np.arange(n, dtype=np.uint64), x, threads=os.cpu_count() or 1)
    build = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  build {build:.1f} s ({n / build:,.0f} vectors/s on {os.cpu_count()} cores), "
          f"index memory {index.memory_usage / 2**20:,.0f} MiB (process peak +{(rss1 - rss0) / 1024:,.0f} MiB)")

    truth = np.empty((queries, 10), np.int64)
    for i in range(0, queries, 50):
        sims = q[i : i + 50] @ x.T
        part = np.argpartition(-sims, 10, axis=1)[:, :10]
        order = np.take_along_axis(sims, part, 1).argsort(axis=1)[:, ::-1]
        truth[i : i + 50] = np.take_along_axis(part, order, 1)

    def numpy_one(v: np.ndarray) -> np.ndarray:
        s = x @ v
        return np.argpartition(-s, 10)[:10]

    lat_np = []
    for v in q[:20]:
        t = time.perf_counter()
        numpy_one(v)
        lat_np.append(time.perf_counter() - t)
    np_p50 = statistics.median(lat_np) * 1e3
    for ef in (64, 128, 256, 512):
        index.expansion_search = ef
        lat = []
        found = 0
        for j, v in enumerate(q):
            t = time.perf_counter()
            m = index.search(v, 10, threads=1)
            lat.append(time.perf_counter() - t)
            found += len(set(m.keys.tolist()) & set(truth[j].tolist()))
        p50, p99 = np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3
        print(f"  expansion_search {ef:>3}: p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  "
              f"recall@10 {found / (10 * queries):.3f}   | numpy exact p50 {np_p50:7.2f} ms "
              f"(recall 1.0)  speed-up x{np_p50 / p50:,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=1_000_000, help="usearch size (default 1,000,000)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dtype", default="f16", help="usearch scalar type (f16, bf16, f32, i8)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--data", default="random,lowrank",
                    help="comma list of vector sets for (c): random, lowrank")
    ap.add_argument("--images", type=int, default=256, help="images through the pipeline in (b)")
    ap.add_argument("--biomedclip", action="store_true", help="BiomedCLIP arch forward on CPU too")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-usearch", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"cuda {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_decode:
            bench_decode(Path(tmp) / "a")
        if not args.skip_embed:
            bench_embed(Path(tmp) / "b", args.biomedclip, args.images)
    if not args.skip_usearch:
        for kind in args.data.split(","):
            bench_usearch(args.vectors, args.dim, args.dtype, args.queries, kind.strip())


if __name__ == "__main__":
    main()
