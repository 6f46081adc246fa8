"""Kill the node with SIGKILL while storescu sends; after a restart, every instance
answered with success is on disk, readable, catalogued and queued exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest

from indexer import queue
from node.storage import connect
from tests._peers import free_port, wait_for_port
from tests._synthetic import ct_instance, write_files

pytestmark = pytest.mark.slow


def _serve(data_dir: Path, dimse_port: int, http_port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--dimse-port", str(dimse_port), "--http-port", str(http_port),
         "--allow-any-source", "--model", "local-dir:/nonexistent-model"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0"},
    )


def _acknowledged(storescu_output: str) -> list[str]:
    """Files whose C-STORE response was Success, from storescu -v output."""
    done, current = [], None
    for line in storescu_output.splitlines():
        if line.startswith("I: Sending file: "):
            current = line.removeprefix("I: Sending file: ").strip()
        elif line.startswith("I: Received Store Response") and "Success" in line and current:
            done.append(current)
            current = None
    return done


def test_sigkill_during_storescu_loses_nothing_acknowledged(tmp_path: Path) -> None:
    files = write_files(
        [ct_instance(study_uid="1.2.826.0.1.1", series_uid=f"1.2.826.0.1.1.{i // 50}",
                     patient_id="PCRASH", instance_number=i, size=256, seed=i)
         for i in range(300)],
        tmp_path / "in",
    )
    data_dir, dimse_port, http_port = tmp_path / "data", free_port(), free_port()
    node = _serve(data_dir, dimse_port, http_port)
    wait_for_port(dimse_port, timeout=60)
    sender = subprocess.Popen(
        ["storescu", "-v", "-aec", "PRECEDENT", "-aet", "STORESCU", "127.0.0.1",
         str(dimse_port), *map(str, files)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(sender.stdout or []))
    reader.start()
    # kill once a good part has been acknowledged, in the middle of the transfer
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sum("Received Store Response" in line for line in list(output)) >= 80:
            break
        time.sleep(0.01)
    node.send_signal(signal.SIGKILL)
    node.wait()
    sender.wait(timeout=60)
    reader.join(timeout=10)
    acknowledged = _acknowledged("".join(output))
    assert 80 <= len(acknowledged) < 300, "the kill should land mid-transfer"

    # restart: the node comes back over the same data folder
    node = _serve(data_dir, dimse_port, http_port)
    try:
        wait_for_port(dimse_port, timeout=60)
        conn = connect(data_dir / "catalog.sqlite")
        rows = dict(conn.execute("SELECT sop_instance_uid, path FROM instances").fetchall())
        queued = queue.states_of(conn, rows)  # one queue entry per instance at most
        for path in acknowledged:
            sop = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            assert sop in rows, f"acknowledged instance {sop} lost"
            kept = pydicom.dcmread(data_dir / rows[sop])
            assert kept.SOPInstanceUID == sop and len(kept.PixelData) == 256 * 256 * 2
            assert sop in queued
        assert set(queued) == set(rows)  # nothing catalogued without its queue entry
        assert queue.counts(conn).total == len(rows)  # and nothing queued without its row
        assert not list((data_dir / "tmp").glob("*.part")), "partial writes are cleaned up"
    finally:
        node.terminate()
        node.wait(timeout=30)
