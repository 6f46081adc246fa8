"""Ingest throughput: the node vs Orthanc vs a bare write-and-fsync pynetdicom SCP.

The same several hundred 512×512 16-bit CT instances go through dcmtk ``storescu`` to
each receiver in the same run: once over one association, then split over four
associations in parallel. Prints instances/second for each and the ratios.

    .venv/bin/python bench/ingest.py [--instances 300]

Goal (issue 2): node ≥ 5× Orthanc (Debian package, default SQLite settings) and
≥ 60% of the bare write-and-fsync rate, with durability on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._peers import free_port, start_orthanc, wait_for_port
from tests._synthetic import ct_instance, write_files

BARE_SCP = textwrap.dedent(
    """
    import os, sys
    from pynetdicom import AE, evt, AllStoragePresentationContexts, ALL_TRANSFER_SYNTAXES
    folder, port = sys.argv[1], int(sys.argv[2])
    def handle_store(event):
        path = os.path.join(folder, event.request.AffectedSOPInstanceUID)
        with open(path, "wb") as f:
            f.write(event.encoded_dataset())
            f.flush()
            os.fsync(f.fileno())
        return 0x0000
    ae = AE(ae_title="BARE")
    ae.maximum_associations = 16
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    """
)


def _send(port: int, aet: str, files: list[Path], associations: int) -> float:
    """Seconds to store ``files`` over ``associations`` parallel storescu processes."""
    chunks = [files[i::associations] for i in range(associations)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(["storescu", "-aec", aet, "-aet", "BENCH", "127.0.0.1", str(port),
                          *map(str, chunk)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for chunk in chunks
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"storescu to {aet} failed: {err.decode()[-500:]}")
    return time.perf_counter() - start


def _make(n: int, folder: Path, tag: int) -> list[Path]:
    datasets = [
        ct_instance(study_uid=f"1.2.826.0.1.9.{tag}", series_uid=f"1.2.826.0.1.9.{tag}.{i // 100}",
                    patient_id=f"BENCH{tag}", instance_number=i, size=512, seed=i)
        for i in range(n)
    ]
    return write_files(datasets, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=300)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="precedent-bench-"))
    serial = _make(args.instances, tmp / "serial", 1)
    parallel = _make(args.instances, tmp / "parallel", 2)
    mb = sum(f.stat().st_size for f in serial) / 1e6
    print(f"{args.instances} CT instances, 512x512x16 bit, {mb:.0f} MB per run")

    results: dict[str, tuple[float, float]] = {}

    orthanc = start_orthanc(tmp / "orthanc")
    try:
        results["Orthanc"] = (_send(orthanc.dimse_port, orthanc.aet, serial, 1),
                              _send(orthanc.dimse_port, orthanc.aet, parallel, 4))
    finally:
        orthanc.stop()

    port = free_port()
    (tmp / "bare").mkdir()
    bare = subprocess.Popen([sys.executable, "-c", BARE_SCP, str(tmp / "bare"), str(port)])
    try:
        wait_for_port(port, timeout=30)
        results["bare pynetdicom write+fsync"] = (_send(port, "BARE", serial, 1),
                                                  _send(port, "BARE", parallel, 4))
    finally:
        bare.terminate()
        bare.wait()

    port, http_port = free_port(), free_port()
    node = subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--data-dir", str(tmp / "node"), "--host",
         "127.0.0.1", "--dimse-port", str(port), "--http-port", str(http_port),
         "--allow-any-source", "--model", "local-dir:/no-model-for-this-benchmark"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0",
             "PRECEDENT_LOG_LEVEL": "WARNING", "PRECEDENT_WORKER__ENABLED": "false"},
    )
    try:
        wait_for_port(port, timeout=60)
        results["Precedent node"] = (_send(port, "PRECEDENT", serial, 1),
                                     _send(port, "PRECEDENT", parallel, 4))
    finally:
        node.terminate()
        node.wait()

    n = args.instances
    print(f"\n{'receiver':32} {'1 assoc (inst/s)':>18} {'4 assoc (inst/s)':>18}")
    for name, (one, four) in results.items():
        print(f"{name:32} {n / one:18.1f} {n / four:18.1f}")
    node1, node4 = (n / t for t in results["Precedent node"])
    orth1, orth4 = (n / t for t in results["Orthanc"])
    bare1, bare4 = (n / t for t in results["bare pynetdicom write+fsync"])
    print(f"\nnode / Orthanc:   {node1 / orth1:5.2f}x (1 assoc)   {node4 / orth4:5.2f}x (4 assoc)"
          "   goal >= 5x")
    print(f"node / bare SCP:  {node1 / bare1:5.0%}  (1 assoc)   {node4 / bare4:5.0%}  (4 assoc)"
          "   goal >= 60%")


if __name__ == "__main__":
    main()
