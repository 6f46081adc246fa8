"""Durable and resumable: a SIGKILL of the node midway, a PACS outage midway, a partial
C-MOVE, and a node stopped while its backfill waits. Each ends with the node holding what the PACS holds for the window,
nothing doubled, done studies not pulled again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from indexer import queue
from node.backfill.request import BackfillRequest
from node.data_folder import stored_admin_token
from node.storage import connect
from tests._peers import free_port, start_orthanc, wait_for_port
from tests._synthetic import to_bytes
from tests.backfill._cli import precedent
from tests.backfill._pacs import (
    load_pacs,
    make_pacs_studies,
    register_node,
    restart_orthanc,
    wanted_sops,
)
from tests.backfill.conftest import (
    FakeClock,
    Pacs,
    catalog_sops,
    orthanc_sops,
    start_backfill_node,
    wait_backfill,
)

pytestmark = pytest.mark.slow


def _serve(data_dir: Path, dimse_port: int, http_port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "node", "serve", "--data-dir", str(data_dir), "--host",
             "127.0.0.1", "--dimse-port", str(dimse_port), "--http-port", str(http_port),
             "--allow-any-source", "--model", "local-dir:/nonexistent-model"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0",
                 "PRECEDENT_BACKFILL__RETRY_INITIAL_S": "0.2",
                 "PRECEDENT_BACKFILL__POLL_S": "0.1"})


def _plan(data_dir: Path) -> dict[str, tuple[str, int, float | None]]:
    """study → (state, attempts, finished_at), read from the catalog as it is on disk."""
    conn = connect(data_dir / "catalog.sqlite", create_schema=False)
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT study_instance_uid, state, attempts, finished_at FROM backfill_studies")}
    except Exception:  # noqa: BLE001 — the plan tables may not exist yet
        return {}
    finally:
        conn.close()


def test_sigkill_midway_then_restart_resumes_without_pulling_done_studies_again(
        tmp_path: Path) -> None:
    orthanc = start_orthanc(tmp_path)
    try:
        studies = make_pacs_studies(12, seed=3)  # one a day from 2023-01-01
        load_pacs(orthanc, studies)
        data_dir, dimse_port, http_port = tmp_path / "data", free_port(), free_port()
        register_node(orthanc, "PRECEDENT", dimse_port)
        added = precedent("ae", "destination", "add", "ORTHANC", "127.0.0.1",
                          str(orthanc.dimse_port), "--data-dir", str(data_dir))
        assert added.returncode == 0, added.stderr
        log1, log2 = tmp_path / "node1.log", tmp_path / "node2.log"
        node = _serve(data_dir, dimse_port, http_port, log1)
        try:
            wait_for_port(http_port, timeout=60)
            started = precedent("backfill", "start", "ORTHANC", "--since", "2023-01-01",
                                "--until", "2023-12-31", "--rate", "14400",
                                "--concurrency", "1", "--data-dir", str(data_dir))
            assert started.returncode == 0, started.stderr
            deadline = time.monotonic() + 60
            while sum(s == "done" for s, _, _ in _plan(data_dir).values()) < 4:
                assert time.monotonic() < deadline, "the backfill did not get going"
                time.sleep(0.05)
            node.send_signal(signal.SIGKILL)
            node.wait()
            before = _plan(data_dir)
            done_before = {uid: v for uid, v in before.items() if v[0] == "done"}
            assert 4 <= len(done_before) < 12, "the kill should land midway"

            node = _serve(data_dir, dimse_port, http_port, log2)
            wait_for_port(http_port, timeout=60)
            deadline = time.monotonic() + 90
            token = stored_admin_token(data_dir)  # the node's, made at its first start
            while True:
                status = httpx.get(f"http://127.0.0.1:{http_port}/admin/backfill/1",
                                   headers={"Authorization": f"Bearer {token}"}).json()
                if status["state"] == "done":
                    break
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
        finally:
            node.terminate()
            node.wait(timeout=30)

        after = _plan(data_dir)
        assert {s for s, _, _ in after.values()} == {"done"}
        for uid, (state, attempts, finished) in done_before.items():
            assert after[uid] == (state, attempts, finished), f"{uid} was pulled again"
        conn = connect(data_dir / "catalog.sqlite")
        held = {r[0] for r in conn.execute("SELECT sop_instance_uid FROM instances")}
        assert held == wanted_sops(studies, since="20230101", until="20231231")
        assert queue.counts(conn).total == len(held)  # one queue entry each, nothing twice
        assert set(queue.states_of(conn, held)) == held
        sources = {r[0] for r in conn.execute("SELECT DISTINCT source FROM instances")}
        assert sources == {"BACKFILL:1"}  # the C-MOVE in hand at the kill was marked too
        conn.close()
        # nothing was sent twice after the restart
        assert "outcome=duplicate_kept" not in log2.read_text()
    finally:
        orthanc.stop()


def test_pacs_outage_midway_is_retried_and_the_backfill_completes(
        tmp_path: Path, backfill_node) -> None:
    orthanc = start_orthanc(tmp_path, extra_config={"DicomModalitiesInDatabase": True})
    try:
        studies = make_pacs_studies(12, seed=4)
        load_pacs(orthanc, studies)
        node = backfill_node(orthanc)
        manager = node.services.backfill
        job = manager.start_backfill(BackfillRequest.build(
            source="ORTHANC", since="2023-01-01", until="2023-01-31", rate=7200,
            concurrency=2))
        wait_backfill(node, job["id"], until=lambda s: s["studies"]["done"] >= 3)
        orthanc.process.kill()  # the PACS goes down hard, midway
        orthanc.process.wait()
        held = wait_backfill(node, job["id"], timeout=30,
                             until=lambda s: "cannot be reached" in (s["note"] or ""))
        assert held["state"] == "running"
        time.sleep(1.0)  # a few retries against the stopped PACS
        restart_orthanc(orthanc)
        status = wait_backfill(node, job["id"], timeout=90)
        assert status["state"] == "done", status
        assert status["studies"]["failed"] == 0 and status["note"] is None
        assert catalog_sops(node) == wanted_sops(studies, since="20230101", until="20230131")
    finally:
        orthanc.stop()


def test_a_partial_c_move_is_retried_for_what_is_missing_only(pacs: Pacs, backfill_node
                                                              ) -> None:
    """The node rejects duplicates here, so a retry that asked for the whole study again
    would fail on the instances it holds: the study ends done only if the retry asks for
    the missing instance alone."""
    target = next(s for s in pacs.studies
                  if s.series[0][1] == "CT" and len(s.series[0][2]) == 3
                  and s.study_date >= "20220801")
    node = backfill_node(pacs.orthanc, node={"duplicate_policy": "reject"},
                         backfill={"max_attempts": 2, "retry_initial_s": 0.1})
    # the node holds the target's second image under another study: that C-STORE fails
    clash = next(ds for ds in target.datasets if int(ds.InstanceNumber) == 2).copy()
    clash.StudyInstanceUID, clash.SeriesInstanceUID = "1.2.826.0.1.55.1", "1.2.826.0.1.55.1.1"
    node.services.ingest.store(to_bytes(clash), source="TEST")
    day = f"{target.study_date[:4]}-{target.study_date[4:6]}-{target.study_date[6:]}"
    job = node.services.backfill.start_backfill(BackfillRequest.build(
        source="ORTHANC", since=day, until=day, modality="CT"))
    status = wait_backfill(node, job["id"])
    assert status["state"] == "done" and status["studies"]["failed"] == 1
    failure = next(f for f in status["failures"]
                   if f.get("study_instance_uid") == target.study_instance_uid)
    assert failure["state"] == "failed" and failure["attempts"] == 2
    # Orthanc ends such a C-MOVE with a failure (others say 0xB000 with the counts)
    assert failure["reason"].startswith("2 of 3 instances on the node; ")
    assert "C-MOVE" in failure["reason"]
    conn = node.services.connections.get()
    first = dict(conn.execute("SELECT sop_instance_uid, received_at FROM instances "
                              "WHERE study_instance_uid = ?", (target.study_instance_uid,)))
    assert len(first) == 2

    with node.http(node.admin_token) as http:  # the admin removes the clash, resumes
        assert http.delete("/dicom-web/studies/1.2.826.0.1.55.1").status_code in (200, 204)
        assert http.post(f"/admin/backfill/{job['id']}/resume").status_code == 200
    status = wait_backfill(node, job["id"])
    assert status["state"] == "done" and status["studies"]["failed"] == 0, status
    now = dict(conn.execute("SELECT sop_instance_uid, received_at FROM instances "
                            "WHERE study_instance_uid = ?", (target.study_instance_uid,)))
    assert set(now) == set(target.series[0][2])
    assert {k: now[k] for k in first} == first  # the two held were not sent again


def _backfill_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith("precedent-backfill-") and t.is_alive()]


def test_node_stop_ends_the_backfills_and_the_next_start_goes_on(pacs: Pacs,
                                                                 backfill_node) -> None:
    """The workers wait on the node's one stop event: Node.stop ends them (before the
    DIMSE listener their C-MOVEs deliver to), and the next node on the folder goes on."""
    day = FakeClock(datetime(2024, 5, 2, 12, 0))  # outside the window: the workers wait
    node = backfill_node(pacs.orthanc, clock=day)
    job = node.services.backfill.start_backfill(BackfillRequest.build(
        source="ORTHANC", since="2022-11-01", until="2022-11-30", window="22:00-06:00",
        concurrency=2))
    wait_backfill(node, job["id"], until=lambda s: s["note"] is not None)
    assert len(_backfill_threads()) == 2
    node.stop()
    assert _backfill_threads() == []

    night = FakeClock(datetime(2024, 5, 2, 23, 0))
    again = start_backfill_node(node.data_dir, None, clock=night)
    try:
        register_node(pacs.orthanc, again.ae_title, again.dimse_port)
        status = wait_backfill(again, job["id"])
        assert status["state"] == "done" and status["studies"]["failed"] == 0, status
        assert catalog_sops(again) == orthanc_sops(
            pacs.orthanc, since="20221101", until="20221130", modalities=("CT", "MR", "CR"))
    finally:
        again.stop()
    assert _backfill_threads() == []
