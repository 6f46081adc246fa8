"""A node started with the defaults is closed the way comparable servers are: HTTP on
loopback only, the admin routes and DELETE behind an admin token made at the first
start (kept in the data folder, mode 0600, never logged), and the start-up log says what
is open and to whom. Checked from a second client against a real `precedent serve`."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import httpx
import pytest

from tests._synthetic import make_studies, write_files
from tests.node._cli import cli, start_serve

pytestmark = pytest.mark.slow


def _machine_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.255", 9))  # no packet is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_a_fresh_node_opens_reading_to_this_machine_and_guards_administration(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    study = next(make_studies(1, instances_per_study=1, seed=3))
    write_files(study.datasets, tmp_path / "archive")
    serve = start_serve("--model", f"local-dir:{tiny_model_dir}", "--allow-any-source",
                        home=tmp_path, host=None)
    try:
        serve.wait()
        data = tmp_path / ".local" / "share" / "precedent"
        token_file = data / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert cli("index", "import", str(tmp_path / "archive"), "--no-index",
                   home=tmp_path).returncode == 0
        series = study.datasets[0].SeriesInstanceUID
        delete = f"/dicom-web/studies/{study.study_instance_uid}/series/{series}"
        with httpx.Client(base_url=serve.url, timeout=30) as anonymous:
            for method, path in [("DELETE", delete), ("GET", "/config/source"),
                                 ("POST", "/config/source"), ("GET", "/config/ae"),
                                 ("POST", "/admin/index/rebuild"),
                                 ("GET", "/admin/operations/1")]:
                r = anonymous.request(method, path)
                assert r.status_code == 401, (method, path, r.text)
                assert r.headers["content-type"] == "application/problem+json"
            found = anonymous.get("/dicom-web/studies")  # reading: open, on loopback
            assert found.status_code == 200 and len(found.json()) == 1
        with httpx.Client(base_url=serve.url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as admin:
            assert admin.get("/config/source").status_code == 200
            assert admin.delete(delete).status_code == 204
        address = _machine_address()
        if address is not None:  # HTTP does not listen beyond this machine
            with pytest.raises(OSError):
                socket.create_connection((address, serve.http_port), timeout=5).close()
    finally:
        assert serve.stop() == 0, serve.log()
    log = serve.log()
    assert token not in log
    assert (f"DIMSE: AE title PRECEDENT on 0.0.0.0:{serve.dimse_port}; callers: any calling "
            "AE title (node.allow_any_source: for try-outs only)") in log
    assert (f"HTTP: listening on http://127.0.0.1:{serve.http_port} (this machine only); "
            "reading: open to this machine only; /config, /admin and DELETE: admin token in "
            f"{token_file} (readable by its owner only)") in log


def test_the_admin_token_is_kept_across_restarts_and_a_configured_one_wins(
        tmp_path: Path) -> None:
    from node.data_folder import admin_token

    token, path = admin_token(tmp_path, None)
    assert path == tmp_path / "admin-token"
    assert admin_token(tmp_path, None) == (token, path)
    path.chmod(0o644)  # loosened by hand: tightened again
    admin_token(tmp_path, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert admin_token(tmp_path, "configured") == ("configured", None)
