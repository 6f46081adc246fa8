"""Backfill over DICOMweb from a real Orthanc (QIDO-RS, then WADO-RS through the node's
ingest), driven the way an admin does, through the running node: `precedent ae
destination add … --dicomweb URL`, `precedent backfill start … --via dicomweb --follow`,
then `precedent backfill status`."""

from __future__ import annotations

import json

import pytest

from node.storage import aes
from tests.backfill._cli import precedent
from tests.backfill.conftest import Pacs, catalog_sops, orthanc_sops
from tests.conftest import BACKENDS, catalog_for
from tests.node._cli import one_line_error

pytestmark = pytest.mark.slow


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    """The backfill plan and the catalog on SQLite, then on PostgreSQL."""
    return catalog_for(request, request.param)


def test_dicomweb_backfill_from_the_command_line_equals_orthanc(pacs: Pacs,
                                                                backfill_node) -> None:
    # Orthanc's QIDO-RS cuts answers at its limit without saying so: answer_limit says it
    node = backfill_node(pacs.orthanc, backfill={"answer_limit": 5},
                         http={"admin_token": "adm1n"})
    # the PACS with its DICOMweb base, through the running node's admin API
    added = precedent("ae", "destination", "add", "WEBPACS", "127.0.0.1",
                      str(pacs.orthanc.dimse_port), "--dicomweb", pacs.orthanc.dicomweb_url,
                      node=node)
    assert added.returncode == 0, added.stderr
    assert "precedent: through the node (precedent serve, pid" in added.stderr
    destination = aes.get_destination(node.services.connections.get(), "WEBPACS")
    assert destination is not None
    assert destination.dicomweb_url == pacs.orthanc.dicomweb_url.rstrip("/")

    started = precedent("backfill", "start", "WEBPACS", "--since", "2023-03-01",
                        "--until", "2023-04-30", "--via", "dicomweb", "--concurrency", "3",
                        "--follow", node=node)
    assert started.returncode == 0, started.stderr
    assert "precedent: through the node" in started.stderr
    assert "backfill 1 started" in started.stdout
    assert "  done" in started.stdout and "via dicomweb (WADO-RS)" in started.stdout

    # no --modality: every image series (CT, MR, CR), no report series
    expected = orthanc_sops(pacs.orthanc, since="20230301", until="20230430",
                            modalities=("CT", "MR", "CR"))
    assert expected and catalog_sops(node) == expected
    conn = node.services.connections.get()
    assert {r[0] for r in conn.execute("SELECT DISTINCT source FROM instances")} == \
        {"BACKFILL:1"}
    assert conn.execute("SELECT count(*) FROM series WHERE modality = 'SR'").fetchone()[0] == 0

    status = precedent("backfill", "status", "1", "--json", node=node)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["state"] == "done" and data["via"] == "dicomweb"
    assert data["instances"] == {"wanted": len(expected), "received": len(expected)}
    assert data["studies"]["failed"] == 0 and data["failures"] == []

    human = precedent("backfill", "status", node=node)
    assert f"instances: {len(expected)} received of {len(expected)} wanted" in human.stdout
    refused = precedent("backfill", "cancel", "1", node=node)
    assert one_line_error(refused) == "precedent: the node answered 409: backfill 1 is done " \
        "already"
