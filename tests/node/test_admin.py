"""AE-title administration: the `precedent ae` commands and the /config REST routes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests._peers import echoscu, start_storescp


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_manages_sources_and_destinations_without_a_running_node(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    assert _cli("ae", "source", "add", "PACS", "--host", "127.0.0.1",
                "--permissions", "echo,store", *d).returncode == 0
    again = _cli("ae", "source", "add", "PACS", *d)
    assert again.returncode == 2 and "configured already" in again.stderr
    listed = _cli("ae", "source", "list", "--json", *d)
    assert '"ae_title": "PACS"' in listed.stdout and '"store"' in listed.stdout
    bad = _cli("ae", "source", "add", "X", "--permissions", "fly", *d)
    assert bad.returncode == 2 and "echo, find, get, move, store" in bad.stderr
    toolong = _cli("ae", "source", "add", "A" * 17, *d)
    assert toolong.returncode == 2 and "not a valid AE title" in toolong.stderr
    assert _cli("ae", "destination", "add", "VIEWER", "127.0.0.1", "104", *d).returncode == 0
    assert "VIEWER" in _cli("ae", "destination", "list", *d).stdout
    assert _cli("ae", "destination", "remove", "VIEWER", *d).returncode == 0
    gone = _cli("ae", "destination", "remove", "VIEWER", *d)
    assert gone.returncode == 2 and "not configured" in gone.stderr
    assert _cli("ae", "source", "remove", "PACS", *d).returncode == 0


def test_cli_echo_reaches_a_destination(tmp_path: Path) -> None:
    scp = start_storescp(tmp_path, aet="DEST")
    try:
        d = ["--data-dir", str(tmp_path / "data")]
        _cli("ae", "destination", "add", "DEST", "127.0.0.1", str(scp.port), *d)
        result = _cli("ae", "destination", "echo", "DEST", *d)
        assert result.returncode == 0 and "status 0x0000" in result.stdout
    finally:
        scp.stop()


def test_rest_admin_routes(make_node, tmp_path: Path) -> None:
    node = make_node(no_model=True, node={"allow_any_source": False},
                     http={"admin_token": "s3cret", "read_token": "reader"})
    with node.http() as anonymous:
        r = anonymous.get("/config/source")
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert "admin bearer token" in r.json()["detail"]
    with node.http("reader") as reader:
        r = reader.post("/config/source", json={"ae_title": "ECHOSCU"})
        assert r.status_code == 403 and "use the admin token" in r.json()["detail"]
    with node.http("s3cret") as admin:
        r = admin.post("/config/source", json={"ae_title": "ECHOSCU", "permissions": ["echo"]})
        assert r.status_code == 201, r.text
        assert echoscu(node.dimse_port, called=node.ae_title).returncode == 0  # at once
        r = admin.post("/config/source", json={"ae_title": "ECHOSCU"})
        assert r.status_code == 409 and "configured already" in r.json()["detail"]
        r = admin.post("/config/source", json={"ae_title": "ECHOSCU2", "permissions": "fly"})
        assert r.status_code == 400 and "echo, find, get, move, store" in r.json()["detail"]
        r = admin.post("/config/destination", json={"ae_title": "X" * 20, "host": "h", "port": 1})
        assert r.status_code == 400 and "not a valid AE title" in r.json()["detail"]
        r = admin.post("/config/destination", json={"ae_title": "D", "host": "h", "port": 0})
        assert r.status_code == 400 and "port" in r.json()["detail"]
        scp = start_storescp(tmp_path, aet="DEST")
        try:
            assert admin.post("/config/destination", json={
                "ae_title": "DEST", "host": "127.0.0.1", "port": scp.port}).status_code == 201
            r = admin.post("/config/destination/DEST/echo")
            assert r.status_code == 200 and r.json()["success"] is True
        finally:
            scp.stop()
        r = admin.post("/config/destination/DEST/echo")
        assert r.status_code == 502 and "did not accept an association" in r.json()["detail"]
        r = admin.post("/config/destination/NOPE/echo")
        assert r.status_code == 404
        r = admin.put("/config/ae", json={"ae_title": "NEWNAME"})
        assert r.status_code == 200 and r.json()["pending"] == {"ae_title": "NEWNAME"}
        # kept in the catalog, a settings source of every command (under the environment)
        status = _cli("status", "--json", "--data-dir", str(node.data_dir))
        assert status.returncode == 0 and '"ae_title": "NEWNAME"' in status.stdout
        assert admin.delete("/config/source/ECHOSCU").status_code == 204
        assert admin.delete("/config/source/ECHOSCU").status_code == 404
    assert echoscu(node.dimse_port, called=node.ae_title).returncode != 0


def test_health_says_why_the_model_is_missing(make_node) -> None:
    node = make_node(no_model=True)
    with node.http() as client:
        import time

        for _ in range(100):
            body = client.get("/health").json()
            if body["model"]["status"] == "unavailable":
                break
            time.sleep(0.1)
    assert body["status"] == "degraded"  # issue 10: no longer "ok" without a model
    assert body["model"]["status"] == "unavailable"
    assert "set [model] path" in body["model"]["reason"]


def _follow(admin, op: dict) -> dict:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + 120
    while op["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        op = admin.get(f"/admin/operations/{op['id']}").json()
    return op


def test_rest_operations_import_and_rebuild(make_node, tmp_path: Path) -> None:
    """/admin: what the command uses while the node runs. A rebuild with a model that
    cannot load fails in one line and leaves the node's model as it was."""
    from tests._synthetic import make_studies, write_files

    node = make_node()
    node.wait_model()
    for study in make_studies(3, instances_per_study=2):
        write_files(study.datasets, tmp_path / "archive" / study.patient_id)
    (tmp_path / "archive" / "notes.txt").write_text("not DICOM")
    with node.http(node.admin_token) as admin:
        r = admin.post("/admin/index/import", json={"paths": ["archive"]})
        assert r.status_code == 400 and "must be absolute" in r.json()["detail"]
        r = admin.post("/admin/index/import", json={"paths": [str(tmp_path / "nope")]})
        assert r.status_code == 400 and "neither a file nor a folder" in r.json()["detail"]
        assert admin.get("/admin/operations/999").status_code == 404
        r = admin.post("/admin/index/import", json={"paths": [str(tmp_path / "archive")]})
        assert r.status_code == 202, r.text
        op = _follow(admin, r.json())
        assert op["state"] == "done" and op["stage"] == "indexing"
        assert (op["done"], op["total"]) == (6, 6)
        assert op["outcomes"] == {
            "stored": 6, "skipped: the data set cannot be decoded (InvalidDicomError)": 1}

        identity = admin.get("/health").json()["model"]["identity"]
        r = admin.post("/admin/index/rebuild", json={"model": "local-dir:/nonexistent"})
        op = _follow(admin, r.json())
        assert op["state"] == "failed"
        assert op["error"].startswith("model folder /nonexistent does not exist")
        health = admin.get("/health").json()
        assert health["model"] == {"status": "ready", "reason": None, "identity": identity,
                                   "engine": "torch fp32"}

        csv_body = "StudyInstanceUID,text\n1.2.3.4,report\n"
        r = admin.post("/admin/reports/import", content=csv_body,
                       headers={"Content-Type": "text/csv"})
        assert r.status_code == 200 and r.json()["summary"].startswith("1 rows: 0 matched")
    with node.http() as anonymous:
        assert anonymous.post("/admin/reports/import", content="x").status_code == 401
