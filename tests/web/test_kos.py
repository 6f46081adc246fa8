"""Key Object Selection documents of similar cases: written with highdicom, stored on
the node, read back with pydicom and highdicom (every reference checked), sent to
Orthanc by C-STORE and read back there through DICOMweb; and the automatic mode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from highdicom.ko import KeyObjectSelectionDocument
from pydicom.uid import KeyObjectSelectionDocumentStorage

from node.key_objects import KOS_SOURCE
from node.storage.aes import add_destination
from tests._peers import free_port
from tests._synthetic import make_studies
from tests.conftest import RunningNode, start_node
from tests.web._helpers import PROBLEM_JSON, Catalogue, first_value, populate, store


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
        module_catalog_url: str | None) -> Iterator[Catalogue]:
    folder = tmp_path_factory.mktemp("kos")
    node = start_node(folder / "node", tiny_model_dir,
                      catalog_url=module_catalog_url)
    try:
        yield populate(node, folder)
    finally:
        node.stop()


def _post_kos(node: RunningNode, study_uid: str, body: Any = None):  # type: ignore[no-untyped-def]
    with node.http() as http:
        if body is None:
            return http.post(f"/dicom-web/studies/{study_uid}/similar/kos")
        return http.post(f"/dicom-web/studies/{study_uid}/similar/kos", json=body)


def _stored_file(node: RunningNode, sop_uid: str) -> Path:
    row = node.services.connections.get().execute(
        "SELECT path FROM instances WHERE sop_instance_uid = ?", (sop_uid,)).fetchone()
    assert row is not None, f"{sop_uid} is not in the catalog"
    return node.data_dir / row[0]


def _check_kos(ds: pydicom.Dataset, *, query_study: str, patient_id: str,
               expected: list[tuple[str, str, str]]) -> None:
    """Every reference of the KOS, through pydicom and through highdicom."""
    assert ds.SOPClassUID == KeyObjectSelectionDocumentStorage and ds.Modality == "KO"
    assert ds.StudyInstanceUID == query_study and ds.PatientID == patient_id
    assert ds.SeriesDescription == "Similar cases"
    title = ds.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == (
        "113000", "DCM", "Of Interest")
    # content tree: the description, then one IMAGE item per case, in rank order
    items = ds.ContentSequence
    description = [i for i in items if i.ValueType == "TEXT"]
    assert description[0].TextValue == "Similar cases"
    assert description[0].ConceptNameCodeSequence[0].CodeValue == "113012"
    images = [i for i in items if i.ValueType in ("IMAGE", "COMPOSITE")]
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images] == [
        sop for _, _, sop in expected]
    # evidence: every referenced instance under its own study and series, nothing else
    evidence = {
        (study.StudyInstanceUID, series.SeriesInstanceUID, sop.ReferencedSOPInstanceUID)
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for sop in series.ReferencedSOPSequence
    }
    assert evidence == set(expected)
    # and highdicom reads the same
    document = KeyObjectSelectionDocument.from_dataset(ds)
    refs = document.content.get_references()
    assert [r.referenced_sop_instance_uid for r in refs] == [sop for _, _, sop in expected]
    for study_uid, series_uid, sop_uid in expected:
        assert document.resolve_reference(sop_uid) == (study_uid, series_uid, sop_uid)


def _expected(cat: Catalogue, study_uid: str, limit: int) -> list[tuple[str, str, str]]:
    with cat.node.http() as http:
        items = http.get(f"/dicom-web/studies/{study_uid}/similar",
                         params={"limit": limit}).json()
    return [(first_value(i, "0020000D"), first_value(i, "00111007"), first_value(i, "00111003"))
            for i in items]


def test_kos_round_trip_on_the_node(cat: Catalogue) -> None:
    query = cat.studies[0]
    expected = _expected(cat, query.study_instance_uid, 4)
    response = _post_kos(cat.node, query.study_instance_uid, {"limit": 4})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sent_to"] is None and body["references"] == 4
    path = _stored_file(cat.node, body["SOPInstanceUID"])
    ds = pydicom.dcmread(path)
    assert ds.SeriesInstanceUID == body["SeriesInstanceUID"]
    _check_kos(ds, query_study=query.study_instance_uid, patient_id=query.patient_id,
               expected=expected)
    # and any DICOMweb client finds and retrieves it on the node
    client = DICOMwebClient(url=cat.node.dicomweb_url)
    (found,) = client.search_for_series(study_instance_uid=query.study_instance_uid,
                                        search_filters={"Modality": "KO"})
    assert found["0020000E"]["Value"] == [body["SeriesInstanceUID"]]
    retrieved = client.retrieve_instance(query.study_instance_uid, body["SeriesInstanceUID"],
                                         body["SOPInstanceUID"])
    _check_kos(retrieved, query_study=query.study_instance_uid, patient_id=query.patient_id,
               expected=expected)
    # stored through the ingest path, and not indexed as a query object
    conn = cat.node.services.connections.get()
    cat.node.wait_indexed()
    source = conn.execute("SELECT source FROM instances WHERE sop_instance_uid = ?",
                          (body["SOPInstanceUID"],)).fetchone()[0]
    assert source == KOS_SOURCE
    state = conn.execute("SELECT state FROM work WHERE sop_instance_uid = ?",
                         (body["SOPInstanceUID"],)).fetchone()[0]
    assert state == "skipped"
    assert conn.execute("SELECT count(*) FROM vectors WHERE uid IN (?, ?)",
                        (body["SOPInstanceUID"], body["SeriesInstanceUID"])).fetchone()[0] == 0


def test_kos_with_filters_and_no_body(cat: Catalogue) -> None:
    query = cat.studies[1]
    response = _post_kos(cat.node, query.study_instance_uid)  # no body: defaults
    assert response.status_code == 201, response.text
    assert response.json()["references"] == min(10, len(cat.studies))  # +1 same-patient study
    response = _post_kos(cat.node, query.study_instance_uid,
                         {"limit": 2, "Modality": "CT", "excludePatient": False})
    assert response.status_code == 201 and response.json()["references"] == 2


def test_kos_takes_the_cosine_floor(cat: Catalogue) -> None:
    query = cat.studies[6].study_instance_uid
    with cat.node.http() as http:
        items = http.get(f"/dicom-web/studies/{query}/similar", params={"limit": 100}).json()
    scores = [float(first_value(i, "00111001")) for i in items]
    assert len(scores) >= 4 and scores[1] > scores[2]
    floor = round((scores[1] + scores[2]) / 2, 6)
    response = _post_kos(cat.node, query, {"minScore": floor, "send": False})
    assert response.status_code == 201, response.text
    assert response.json()["references"] == 2  # the two cases at or above the floor
    ds = pydicom.dcmread(_stored_file(cat.node, response.json()["SOPInstanceUID"]))
    _check_kos(ds, query_study=query, patient_id=cat.studies[6].patient_id,
               expected=_expected(cat, query, 2))
    detail = _problem(_post_kos(cat.node, query, {"minScore": 2}), 400)["detail"]
    assert "minScore 2.0 is out of range" in detail
    assert "nothing to write" in _problem(_post_kos(cat.node, query, {"minScore": 1}),
                                          409)["detail"]


def _problem(response, status: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    return body


def test_kos_errors(cat: Catalogue) -> None:
    uid = cat.studies[2].study_instance_uid
    assert "not on this node" in _problem(_post_kos(cat.node, "1.2.3.4"), 404)["detail"]
    assert "not configured" in _problem(
        _post_kos(cat.node, uid, {"destination": "NOWHERE"}), 404)["detail"]
    assert "limit" in _problem(_post_kos(cat.node, uid, {"limit": 0}), 400)["detail"]
    assert "is not a field" in _problem(_post_kos(cat.node, uid, {"lmit": 3}), 400)["detail"]
    assert "StudyDate" in _problem(
        _post_kos(cat.node, uid, {"StudyDate": "yesterday"}), 400)["detail"]
    assert "nothing to write" in _problem(
        _post_kos(cat.node, uid, {"Modality": "MR"}), 409)["detail"]
    with cat.node.http() as http:
        response = http.post(f"/dicom-web/studies/{uid}/similar/kos", content=b"{not json",
                             headers={"Content-Type": "application/json"})
    assert "not JSON" in _problem(response, 400)["detail"]


def test_kos_to_a_destination_that_is_down_is_502_and_kept(cat: Catalogue) -> None:
    conn = cat.node.services.connections.get()
    add_destination(conn, "DOWNPACS", host="127.0.0.1", port=free_port())
    uid = cat.studies[3].study_instance_uid
    body = _problem(_post_kos(cat.node, uid, {"destination": "DOWNPACS", "limit": 2}), 502)
    assert "stored on this node but not sent" in body["detail"]
    assert _stored_file(cat.node, body["SOPInstanceUID"]).exists()


@pytest.mark.slow
def test_kos_is_sent_to_orthanc_and_readable_there(cat: Catalogue, make_orthanc) -> None:  # type: ignore[no-untyped-def]
    orthanc = make_orthanc(modalities={"precedent": (cat.node.ae_title, "127.0.0.1",
                                                    cat.node.dimse_port)})
    conn = cat.node.services.connections.get()
    add_destination(conn, "ORTHANC", host="127.0.0.1", port=orthanc.dimse_port)
    query = cat.studies[4]
    expected = _expected(cat, query.study_instance_uid, 5)
    response = _post_kos(cat.node, query.study_instance_uid,
                         {"limit": 5, "destination": "ORTHANC"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sent_to"] == "ORTHANC"
    client = DICOMwebClient(url=orthanc.dicomweb_url)
    found = client.search_for_instances(
        study_instance_uid=query.study_instance_uid,
        search_filters={"SOPInstanceUID": body["SOPInstanceUID"]})
    assert len(found) == 1
    ds = client.retrieve_instance(query.study_instance_uid, body["SeriesInstanceUID"],
                                  body["SOPInstanceUID"])
    _check_kos(ds, query_study=query.study_instance_uid, patient_id=query.patient_id,
               expected=expected)


@pytest.mark.slow
def test_automatic_kos_on_stable_study(make_node, make_orthanc) -> None:  # type: ignore[no-untyped-def]
    orthanc = make_orthanc()
    node: RunningNode = make_node(kos={"auto_send": True, "destination": "ORTHANC",
                                       "limit": 3})
    add_destination(node.services.connections.get(), "ORTHANC", host="127.0.0.1",
                    port=orthanc.dimse_port)
    node.wait_model()
    studies = list(make_studies(4, instances_per_study=1, size=32, seed=3))
    for study in studies[:3]:
        store(node, study.datasets)
    node.wait_indexed()
    store(node, studies[3].datasets)  # becomes stable with three others indexed
    query = studies[3].study_instance_uid

    def kos_on_node() -> list[str]:
        rows = node.services.connections.get().execute(
            "SELECT sop_instance_uid FROM instances WHERE study_instance_uid = ? "
            "AND source = ?", (query, KOS_SOURCE)).fetchall()
        return [r[0] for r in rows]

    deadline = time.monotonic() + 60
    while not kos_on_node() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kos_on_node(), "no automatic KOS was written"
    sop = kos_on_node()[0]
    with orthanc.client() as http:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            hits = http.post("/tools/find", json={"Level": "Instance", "Query": {
                "SOPInstanceUID": sop}}).json()
            if hits:
                break
            time.sleep(0.2)
    assert hits, "the automatic KOS did not reach Orthanc"
    # storing the KOS made the study unstable again: it must not be answered twice
    time.sleep(3 * node.settings.node.stable_after_s + 1)
    assert len(kos_on_node()) == 1
