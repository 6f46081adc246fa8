"""One process owns a data folder: a second `serve` refuses naming the running pid, and
administrative commands act through the running node (or hold the lock themselves while
it is down). The races of the issue, against a real `precedent serve` subprocess."""

from __future__ import annotations

import csv
import json
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.data_folder import DataFolderLock, Owner, OwnerRoleValues, current_owner
from node.errors import DataFolderBusy
from tests._models import write_random_model_dir
from tests._peers import echoscu, free_port
from tests._synthetic import SyntheticStudy, make_studies, write_files
from tests.conftest import TINY_MODEL_CONFIG
from tests.node._cli import Serve, cli, one_line_error, start_serve

pytestmark = pytest.mark.slow

SCORE = "00111001"


def _archive(folder: Path, n_studies: int, per_study: int) -> list[SyntheticStudy]:
    studies = list(make_studies(n_studies, instances_per_study=per_study, seed=7))
    for study in studies:
        write_files(study.datasets, folder / study.patient_id)
    return studies


def test_the_lock_names_its_owner_and_goes_with_it(tmp_path: Path) -> None:
    card = Owner(pid=os.getpid(), role=OwnerRoleValues.COMMAND, command="precedent test")
    assert current_owner(tmp_path) is None
    with DataFolderLock.acquire(tmp_path, card):
        assert current_owner(tmp_path) == card
        with pytest.raises(DataFolderBusy, match=f"in use by `precedent test` \\(pid {os.getpid()}"):
            DataFolderLock.acquire(tmp_path, card)
    assert current_owner(tmp_path) is None
    DataFolderLock.acquire(tmp_path, card).release()  # free again


def test_serve_refuses_a_folder_a_command_is_working_in(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    card = Owner(pid=os.getpid(), role=OwnerRoleValues.COMMAND,
                 command="precedent index import /archive")
    with DataFolderLock.acquire(data, card):
        result = cli("serve", "--data-dir", str(data), "--host", "127.0.0.1", "--dimse-port",
                     str(free_port()), "--http-port", str(free_port()), home=tmp_path)
    line = one_line_error(result)
    assert f"in use by `precedent index import /archive` (pid {os.getpid()})" in line


@pytest.fixture
def node(tmp_path: Path, tiny_model_dir: Path) -> Any:
    """A real `precedent serve` on its own folder, without --allow-any-source."""
    serve = start_serve("--data-dir", str(tmp_path / "data"), "--model",
                        f"local-dir:{tiny_model_dir}", home=tmp_path)
    serve.wait("ready")
    yield serve
    assert serve.stop() == 0, serve.log()


def test_a_second_serve_refuses_naming_the_running_pid(tmp_path: Path, node: Serve) -> None:
    http_port, dimse_port = free_port(), free_port()
    second = cli("serve", "--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1",
                 "--dimse-port", str(dimse_port), "--http-port", str(http_port), home=tmp_path)
    line = one_line_error(second)
    assert f"in use by the node (precedent serve, pid {node.process.pid} at {node.url})" in line
    assert node.health() is not None  # the first one is untouched


def test_admin_commands_act_through_the_running_node(tmp_path: Path, node: Serve) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    through = f"precedent: through the node (precedent serve, pid {node.process.pid}"
    # a source added by the command is accepted by the running node at once
    assert echoscu(node.dimse_port, called="PRECEDENT").returncode != 0
    added = cli("ae", "source", "add", "ECHOSCU", "--permissions", "echo", *d, home=tmp_path)
    assert added.returncode == 0, added.stderr
    assert through in added.stderr and "source ECHOSCU added (echo)" in added.stdout
    assert echoscu(node.dimse_port, called="PRECEDENT").returncode == 0
    again = cli("ae", "source", "add", "ECHOSCU", *d, home=tmp_path)
    assert "configured already" in one_line_error(again)
    assert cli("ae", "destination", "add", "PACS", "127.0.0.1", "104", *d,
               home=tmp_path).returncode == 0
    assert "PACS" in cli("ae", "destination", "list", *d, home=tmp_path).stdout
    assert cli("ae", "destination", "remove", "PACS", *d, home=tmp_path).returncode == 0

    # index import races nothing: the node stores, its one worker indexes
    studies = _archive(tmp_path / "archive", 8, 2)
    imported = cli("index", "import", str(tmp_path / "archive"), *d, home=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert through in imported.stderr
    assert "16  stored" in imported.stdout
    assert "indexing" in imported.stderr and "16/16" in imported.stderr
    assert "vectors: study 8, series 8, instance 16" in imported.stdout
    assert "queue: pending 0, in_progress 0, done 16, skipped 0, failed 0" in imported.stdout
    health = node.health()
    assert health is not None and health["queue"]["by_state"]["done"] == 16

    reports = tmp_path / "reports.csv"
    with reports.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["StudyInstanceUID", "text", "labels"])
        for s in studies[:3]:
            w.writerow([s.study_instance_uid, s.report, s.finding])
    result = cli("reports", "import", str(reports), *d, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert through in result.stderr and "3 rows: 3 matched" in result.stdout
    with httpx.Client(base_url=node.url) as client:
        report = client.get(f"/dicom-web/studies/{studies[0].study_instance_uid}/report")
        assert report.status_code == 200 and report.json()["labels"] == [studies[0].finding]

    # eval reads beside the running node and writes nothing into its folder
    labels = tmp_path / "labels.csv"
    labels.write_text("StudyInstanceUID,labels\n" + "".join(
        f"{s.study_instance_uid},{s.finding}\n" for s in studies))
    index_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "index").iterdir()}
    ev = cli("eval", "--labels", str(labels), "--k", "3", *d, home=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert "precision@3" in ev.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "index").iterdir()} \
        == index_files


def test_rebuild_with_another_model_is_the_running_nodes_own(tmp_path: Path,
                                                            node: Serve) -> None:
    """The issue: `index rebuild --model OTHER` beside the node left it answering from
    two models (scores 0.99 → 0.09, a limit=3 query with 1 result, /health ok)."""
    d = ["--data-dir", str(tmp_path / "data")]
    studies = _archive(tmp_path / "archive", 10, 4)
    assert cli("index", "import", str(tmp_path / "archive"), *d,
               home=tmp_path).returncode == 0
    other = write_random_model_dir(TINY_MODEL_CONFIG, tmp_path / "other", seed=1)
    answers: list[tuple[int, Any]] = []
    healths: list[str] = []
    done = threading.Event()

    def query() -> None:
        url = f"/dicom-web/studies/{studies[0].study_instance_uid}/similar"
        with httpx.Client(base_url=node.url, timeout=30) as client:
            while not done.is_set():
                r = client.get(url, params={"limit": 3})
                answers.append((r.status_code, r.json()))
                healths.append(client.get("/health").json()["status"])

    querier = threading.Thread(target=query)
    querier.start()
    try:
        rebuilt = cli("index", "rebuild", "--model", f"local-dir:{other}", *d, home=tmp_path)
    finally:
        done.set()
        querier.join(60)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"through the node (precedent serve, pid {node.process.pid}" in rebuilt.stderr
    assert "re-embedding" in rebuilt.stderr and "40/40" in rebuilt.stderr
    assert "vectors: study 10, series 10, instance 40" in rebuilt.stdout

    assert any(status == 200 for status, _ in answers)
    for status, body in answers:
        if status == 503:  # rebuilding: no answer rather than a mixed one
            assert "rebuilding its index" in body["detail"], body
        else:
            assert status == 200, body
            assert len(body) == 3, "a partial or mixed index answered"
            assert all(-1.0 <= item[SCORE]["Value"][0] <= 1.0001 for item in body)
    assert set(healths) <= {"ok", "rebuilding"}
    health = node.health()
    assert health is not None and health["status"] == "ok"
    assert health["model"]["identity"].startswith("local-dir:other@")
    status = json.loads(cli("index", "status", "--json", *d, home=tmp_path).stdout)
    assert status["model_identity"] == health["model"]["identity"]
    with httpx.Client(base_url=node.url) as client:
        after = client.get(f"/dicom-web/studies/{studies[0].study_instance_uid}/similar",
                           params={"limit": 3})
    assert after.status_code == 200 and len(after.json()) == 3
    assert "(or [model] path) in its settings" in rebuilt.stderr
