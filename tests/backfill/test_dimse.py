"""Backfill over DIMSE from a real Orthanc: C-FIND by date windows (split where Orthanc
caps its answers), C-MOVE to the node (or C-GET), only image series of the wanted
modalities; the node's catalog ends equal to Orthanc's, UID for UID. Backfilled studies
are indexed but never answered by the automatic KOS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

from node.backfill.request import BackfillRequest
from node.dimse.scu import DestinationUnreachable, open_query_retrieve
from node.storage import aes
from node.storage.aes import Destination
from tests._peers import free_port, storescu
from tests._synthetic import ct_instance, write_files
from tests.backfill._pacs import wanted_sops
from tests.backfill.conftest import Pacs, catalog_sops, orthanc_sops, wait_backfill
from tests.conftest import BACKENDS, catalog_for

pytestmark = pytest.mark.slow


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    """The backfill plan and the catalog on SQLite, then on PostgreSQL."""
    return catalog_for(request, request.param)

SINCE, UNTIL = "20230101", "20230228"


def test_dimse_backfill_equals_orthanc_and_never_triggers_the_automatic_kos(
        pacs: Pacs, backfill_node, make_storescp, tmp_path: Path) -> None:
    kos_dest = make_storescp(aet="KOSDEST")
    node = backfill_node(pacs.orthanc, model=True,
                         kos={"auto_send": True, "destination": "KOSDEST"})
    conn = node.services.connections.get()
    aes.add_destination(conn, "KOSDEST", host="127.0.0.1", port=kos_dest.port)
    job = node.services.backfill.start_backfill(BackfillRequest.build(
        source="ORTHANC", since="2023-01-01", until="2023-02-28", modality="CT,MR",
        concurrency=4))
    status = wait_backfill(node, job["id"])

    expected = orthanc_sops(pacs.orthanc, since=SINCE, until=UNTIL, modalities=("CT", "MR"))
    assert expected == wanted_sops(pacs.studies, since=SINCE, until=UNTIL,
                                   modalities=("CT", "MR"))
    assert catalog_sops(node) == expected  # no CR, no SR series, nothing outside the dates
    assert status["state"] == "done" and status["studies"]["failed"] == 0
    assert status["studies"]["done"] == status["studies"]["total"] > 10
    assert status["instances"] == {"wanted": len(expected), "received": len(expected)}
    # Orthanc capped its answers at 5: windows were split, one crowded day by time
    windows = {r[0]: r[1] for r in conn.execute(
        "SELECT date_from || '-' || date_to || ' ' || time_from, state FROM backfill_windows")}
    assert len(windows) > 9 and set(windows.values()) == {"done"}
    assert any(w.startswith("20230110-20230110 0") for w in windows)
    sources = {r[0] for r in conn.execute("SELECT DISTINCT source FROM instances")}
    assert sources == {f"BACKFILL:{job['id']}"}
    backfilled = {r[0] for r in conn.execute("SELECT study_instance_uid FROM studies")}

    # a study the PACS pushes afterwards is answered with a KOS (the mode works); the
    # automatic KOS takes studies one at a time in the order they became stable, so by
    # then every backfilled study has been considered, and none was answered
    node.wait_indexed()
    deadline = time.monotonic() + 30
    while conn.execute("SELECT count(*) FROM studies WHERE stable_at IS NULL").fetchone()[0]:
        assert time.monotonic() < deadline, "the backfilled studies never became stable"
        time.sleep(0.1)
    new = write_files([ct_instance(study_uid="1.2.826.0.1.77.1",
                                   series_uid="1.2.826.0.1.77.1.1", patient_id="NEW1",
                                   size=16, study_date="20240601")], tmp_path / "new")
    assert storescu(node.dimse_port, new, called=node.ae_title).returncode == 0
    deadline = time.monotonic() + 60
    while not kos_dest.received():
        assert time.monotonic() < deadline, "the pushed study got no automatic KOS"
        time.sleep(0.1)
    time.sleep(0.5)
    sent = [pydicom.dcmread(f, stop_before_pixels=True) for f in kos_dest.received()]
    assert [str(k.StudyInstanceUID) for k in sent] == ["1.2.826.0.1.77.1"]
    kos_studies = {r[0] for r in conn.execute(
        "SELECT DISTINCT study_instance_uid FROM instances WHERE source = 'PRECEDENT-KOS'")}
    assert kos_studies == {"1.2.826.0.1.77.1"} and not kos_studies & backfilled


def test_c_get_when_configured_for_the_source(pacs: Pacs, backfill_node) -> None:
    node = backfill_node(pacs.orthanc, backfill={"c_get_sources": ["ORTHANC"]})
    job = node.services.backfill.start_backfill(BackfillRequest.build(
        source="ORTHANC", since="2023-05-01", until="2023-06-30", modality="MR,CR",
        concurrency=1))
    status = wait_backfill(node, job["id"])
    assert status["retrieve"] == "get" and status["state"] == "done"
    expected = orthanc_sops(pacs.orthanc, since="20230501", until="20230630",
                            modalities=("MR", "CR"))
    assert expected and catalog_sops(node) == expected
    sources = {r[0] for r in node.services.connections.get().execute(
        "SELECT DISTINCT source FROM instances")}
    assert sources == {f"BACKFILL:{job['id']}"}


def test_abort_ends_a_c_find_the_pacs_does_not_answer() -> None:
    """The node stopping aborts its PACS associations: an operation waiting for the
    PACS's next answer ends then, not at the DIMSE timeout (here ten minutes)."""
    entered, release = threading.Event(), threading.Event()

    def on_find(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        entered.set()
        release.wait(60)  # the PACS says nothing until the test is done
        yield 0x0000, None

    ae = AE(ae_title="SILENTPACS")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, on_find)])
    try:
        qr = open_query_retrieve(Destination("SILENTPACS", "127.0.0.1", port),
                                 calling_ae="PRECEDENT", timeout=600)
        query = Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", ""
        outcome: list[str] = []

        def find() -> None:
            try:
                qr.find(query)
            except DestinationUnreachable as exc:
                outcome.append(str(exc))

        finding = threading.Thread(target=find, daemon=True)
        finding.start()
        assert entered.wait(30), "the C-FIND never reached the PACS"
        qr.abort()
        finding.join(30)  # a guard: without the wake-up it waits out the ten minutes
        assert not finding.is_alive()
        assert outcome == [f"SILENTPACS at 127.0.0.1:{port} ended the association "
                           "(before or during a C-FIND)"]
    finally:
        release.set()
        server.shutdown()
