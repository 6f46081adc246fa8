"""A serving node whose PostgreSQL goes away: each REST request answers a 503 problem
with Retry-After and each C-STORE 0xA700 (out of resources: send again), never a 500, a
traceback or a success for what was not kept; the node keeps serving, and once the
server takes connections again the next request is answered from a new connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from pydicom.dataset import Dataset
from pynetdicom import AE

from tests._postgres import PostgresServer
from tests._synthetic import make_studies, to_bytes
from tests.conftest import RunningNode


def _admit(server: PostgresServer, url: str, allowed: bool) -> None:
    """Let the database take connections, or refuse them and end the ones it has."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def _c_store(node: RunningNode, ds: Dataset) -> int:
    """The status a PACS gets for one C-STORE of ``ds``."""
    ae = AE(ae_title="PACS")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.dimse_port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_a_catalog_that_goes_away_is_a_503_and_comes_back(
        make_node: Callable[..., RunningNode], postgres_server: PostgresServer,
        postgres_url: str) -> None:
    node = make_node(catalog_url=postgres_url, no_model=True)
    study = next(iter(make_studies(1, instances_per_study=3, size=16)))
    node.services.ingest.store(to_bytes(study.datasets[0]), source="TEST")
    params: dict[str, Any] = {"StudyInstanceUID": study.study_instance_uid}
    with node.http(node.read_token) as http:
        assert len(http.get("/dicom-web/studies", params=params).json()) == 1
        _admit(postgres_server, postgres_url, False)
        try:
            for _ in range(3):  # the dropped connection, then the refused new ones
                answer = http.get("/dicom-web/studies", params=params)
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.headers["retry-after"] == "5"
                assert "the catalog is not reachable now" in answer.json()["detail"]
            assert _c_store(node, study.datasets[1]) == 0xA700
        finally:
            _admit(postgres_server, postgres_url, True)
        assert len(http.get("/dicom-web/studies", params=params).json()) == 1
        assert _c_store(node, study.datasets[2]) == 0x0000
        instances = http.get(f"/dicom-web/studies/{study.study_instance_uid}/instances").json()
        # the instance refused while the catalog was away was not kept; the one after was
        assert {i["00080018"]["Value"][0] for i in instances} == {
            str(study.datasets[0].SOPInstanceUID), str(study.datasets[2].SOPInstanceUID)}
