"""The backfill's admin routes and commands: behind the admin token, RFC 7807 problems
that say what to change, pause / resume / cancel, and the DICOMweb URL of a
destination; the commands act through the running node (found through the data
folder's lock) and say in one line what to do when it is not running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.data_folder import DataFolderLock, Owner, OwnerRoleValues, prepare
from tests.backfill._cli import precedent
from tests.backfill.conftest import Pacs, wait_backfill
from tests.node._cli import one_line_error

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"


def test_routes_need_the_admin_token_and_answer_problems(pacs: Pacs, backfill_node) -> None:
    node = backfill_node(pacs.orthanc, http={"admin_token": "adm1n", "read_token": "r3ad"})
    body = {"source": "ORTHANC", "since": "2022-08-01", "until": "2022-08-31",
            "rate": 3600, "concurrency": 1}
    with node.http() as anonymous:
        answer = anonymous.post("/admin/backfill", json=body)
        assert answer.status_code == 401 and answer.headers["content-type"] == PROBLEM
    with node.http("r3ad") as reader:
        assert reader.get("/admin/backfill").status_code == 403
    with node.http("adm1n") as admin:
        for bad, status, detail in [
            ({**body, "source": "NOPE"}, 404,
             "destination AE title 'NOPE' is not configured: add the PACS with "
             "`precedent ae destination add NOPE HOST PORT`"),
            ({**body, "since": "31/12/2022"}, 400, "--since '31/12/2022' is not a date"),
            ({**body, "window": "nights"}, 400, "is not HH:MM-HH:MM"),
            ({**body, "via": "smoke"}, 400, "use dimse or dicomweb"),
            ({**body, "extra": 1}, 400, "extra"),
        ]:
            answer = admin.post("/admin/backfill", json=bad)
            assert answer.status_code == status, answer.text
            assert answer.headers["content-type"] == PROBLEM
            assert detail in answer.json()["detail"]
        assert admin.get("/admin/backfill/99").json()["status"] == 404

        started = admin.post("/admin/backfill", json=body)
        assert started.status_code == 201, started.text
        job = started.json()
        assert job["state"] == "running" and job["rate_limit"] == 3600
        again = admin.post("/admin/backfill", json=body)
        assert again.status_code == 409
        assert f"cancel it first (precedent backfill cancel {job['id']})" in \
            again.json()["detail"]

        paused = admin.post(f"/admin/backfill/{job['id']}/pause").json()
        assert paused["state"] == "paused"
        listed = admin.get("/admin/backfill").json()["backfills"]
        assert [b["state"] for b in listed] == ["paused"]
        resumed = admin.post(f"/admin/backfill/{job['id']}/resume").json()
        assert resumed["state"] == "running"
        cancelled = admin.post(f"/admin/backfill/{job['id']}/cancel").json()
        assert cancelled["state"] == "cancelled" and cancelled["finished_at"]
        for action in ("resume", "pause", "cancel"):
            conflict = admin.post(f"/admin/backfill/{job['id']}/{action}")
            assert conflict.status_code == 409 and conflict.headers["content-type"] == PROBLEM
        assert "start a new one" in admin.post(
            f"/admin/backfill/{job['id']}/resume").json()["detail"]
    # cancelled: nothing more is pulled
    studies = node.services.backfill.status(job["id"])["studies"]
    assert studies["moving"] == 0


def test_dicomweb_needs_the_destinations_url(pacs: Pacs, backfill_node) -> None:
    node = backfill_node(pacs.orthanc)
    with node.http(node.admin_token) as admin:
        added = admin.post("/config/destination", json={
            "ae_title": "OTHERPACS", "host": "127.0.0.1", "port": 104})
        assert added.status_code == 201 and added.json()["dicomweb_url"] is None
        answer = admin.post("/admin/backfill", json={
            "source": "OTHERPACS", "since": "2023-01-01", "via": "dicomweb"})
        assert answer.status_code == 400
        assert ("destination OTHERPACS has no DICOMweb URL: remove it and add it again with "
                "`precedent ae destination add OTHERPACS 127.0.0.1 104 --dicomweb URL`"
                ) in answer.json()["detail"]
        bad_url = admin.post("/config/destination", json={
            "ae_title": "THIRD", "host": "h", "port": 104, "dicomweb_url": "pacs:8042"})
        assert bad_url.status_code == 400 and "not an http://" in bad_url.json()["detail"]


def test_resume_of_a_finished_backfill_without_failures_is_refused(pacs: Pacs,
                                                                  backfill_node) -> None:
    node = backfill_node(pacs.orthanc)
    with node.http(node.admin_token) as admin:
        job = admin.post("/admin/backfill", json={
            "source": "ORTHANC", "since": "2022-08-01", "until": "2022-08-10"}).json()
        wait_backfill(node, job["id"])
        answer = admin.post(f"/admin/backfill/{job['id']}/resume")
        assert answer.status_code == 409
        assert "is done and nothing failed" in answer.json()["detail"]


def test_commands_without_a_running_node(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    added = precedent("ae", "destination", "add", "PACS", "10.0.0.5", "104", "--dicomweb",
                      "http://10.0.0.5:8042/dicom-web/", *data)
    assert added.returncode == 0, added.stderr
    assert "DICOMweb http://10.0.0.5:8042/dicom-web)" in added.stdout
    listed = precedent("ae", "destination", "list", "--json", *data)
    assert '"dicomweb_url": "http://10.0.0.5:8042/dicom-web"' in listed.stdout
    bad = precedent("ae", "destination", "add", "X", "h", "104", "--dicomweb", "ftp://x", *data)
    assert one_line_error(bad).endswith("is not an http:// or https:// URL "
                                        "(e.g. http://pacs:8042/dicom-web)")

    start = precedent("backfill", "start", "PACS", "--since", "2020-01-01", *data)
    assert start.returncode == 2
    assert one_line_error(start) == (
        f"precedent: the node is not running (nothing owns the data folder {tmp_path}); a "
        "backfill runs inside the node: start it with `precedent serve`, or give the "
        "node's --config or --data-dir")
    # a mistake in the flags is named first, even while the node is down
    typo = precedent("backfill", "start", "PACS", "--since", "yesterday", *data)
    assert typo.returncode == 2
    assert one_line_error(typo) == ("precedent: --since 'yesterday' is not a date: use "
                                    "YYYY-MM-DD (e.g. 2020-01-31)")
    status = precedent("backfill", "status", *data)
    assert status.returncode == 0 and "no backfills" in status.stdout
    assert "the node is not running" in status.stderr
    pause = precedent("backfill", "pause", "1", *data)
    assert pause.returncode == 2 and "precedent: the node is not running" in \
        one_line_error(pause)


def test_commands_refuse_while_another_command_owns_the_data_folder(tmp_path: Path) -> None:
    prepare(tmp_path)
    me = Owner(pid=os.getpid(), role=OwnerRoleValues.COMMAND, command="precedent index import")
    with DataFolderLock.acquire(tmp_path, me):
        start = precedent("backfill", "start", "PACS", "--since", "2020-01-01",
                          "--data-dir", str(tmp_path))
        assert one_line_error(start).startswith(
            f"precedent: the data folder {tmp_path} is in use by `precedent index import` "
            f"(pid {os.getpid()}), not by the node; a backfill runs inside the node")
