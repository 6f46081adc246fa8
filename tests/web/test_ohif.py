"""The requests the OHIF viewer makes with the data source docs/ohif.md gives (the
``dicomweb`` data source: QIDO-RS study list and series, lazily loaded series metadata,
``wadors`` frames and thumbnails, bulk data single-part, STOW-RS upload), sent as OHIF
sends them — query parameters, Accept headers and the CORS preflight from the viewer's
origin — against a real node with ``[http] cors_origins`` set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests._synthetic import ct_instance, multipart_related, to_bytes
from tests.conftest import RunningNode, start_node

ORIGIN = "https://ohif.hospital.example"
FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
STUDY, SERIES = "1.2.826.0.1.77.1", "1.2.826.0.1.77.1.1"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory,
         module_catalog_url: str | None) -> Iterator[RunningNode]:
    running = start_node(tmp_path_factory.mktemp("ohif"), None,
                         http={"cors_origins": [ORIGIN]},
                         catalog_url=module_catalog_url)
    for i in range(3):
        ds = ct_instance(study_uid=STUDY, series_uid=SERIES, patient_id="OHIF1", size=32,
                         instance_number=i + 1, seed=i, study_date="20240315")
        ds.PatientName = "Doe^Jane"
        running.services.ingest.store(to_bytes(ds), source="TEST")
    yield running
    running.stop()


def _get(node: RunningNode, path: str, accept: str = "application/dicom+json",
         **params: Any) -> httpx.Response:
    response = httpx.get(f"{node.dicomweb_url}{path}", params=params, timeout=30,
                         headers={"Accept": accept, "Origin": ORIGIN})
    assert response.status_code == 200, response.text[:300]
    assert response.headers["access-control-allow-origin"] == ORIGIN
    return response


def _value(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


def test_the_preflight_admits_the_viewer(node: RunningNode) -> None:
    response = httpx.options(f"{node.dicomweb_url}/studies/{STUDY}/series/{SERIES}/instances/"
                             "1.2.3/frames/1",
                             headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                                      "Access-Control-Request-Headers": "accept,authorization"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "accept" in allowed and "authorization" in allowed
    refused = httpx.options(f"{node.dicomweb_url}/studies",
                            headers={"Origin": "https://elsewhere.example",
                                     "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in refused.headers


def test_the_study_list_query(node: RunningNode) -> None:
    """OHIF's mapParams: wildcards around what was typed, a tag for the patient ID, a
    date range from 19700102, limit 101, fuzzymatching false and its includefield list."""
    studies = _get(node, "/studies", PatientName="*Doe*", **{"00100020": "*OHIF*"},
                   StudyDate="19700102-20991231", ModalitiesInStudy="CT", limit=101,
                   offset=0, fuzzymatching="false",
                   includefield="00081030,00080060,00080090,00100030").json()
    (study,) = studies
    assert _value(study, "0020000D") == STUDY
    assert _value(study, "00080020") == "20240315"
    assert _value(study, "00100010") == {"Alphabetic": "Doe^Jane"}
    assert _value(study, "00201208") == 3 and _value(study, "00080061") == "CT"
    for tag in ("00080030", "00080050", "00100020", "00100030", "00081030", "00080090"):
        assert tag in study


def test_the_series_of_a_study_and_their_metadata(node: RunningNode) -> None:
    (series,) = _get(node, f"/studies/{STUDY}/series", includefield="0008103E,00080021").json()
    assert _value(series, "0020000E") == SERIES and _value(series, "00080060") == "CT"
    assert _value(series, "00201209") == 3 and "0008103E" in series and "00080021" in series
    metadata = _get(node, f"/studies/{STUDY}/series/{SERIES}/metadata").json()
    assert len(metadata) == 3
    for item in metadata:
        assert _value(item, "00280010") == 32 and _value(item, "00280011") == 32
        assert item["7FE00010"]["BulkDataURI"].startswith(f"{node.dicomweb_url}/studies/")
    whole_study = _get(node, f"/studies/{STUDY}/metadata").json()  # not lazily loaded
    assert len(whole_study) == 3


def test_wadors_frames_and_bulk_data(node: RunningNode) -> None:
    (item, *_) = _get(node, f"/studies/{STUDY}/series/{SERIES}/metadata").json()
    sop = _value(item, "00080018")
    base = f"/studies/{STUDY}/series/{SERIES}/instances/{sop}"
    response = _get(node, f"{base}/frames/1", accept=FRAME_ACCEPT)
    assert response.headers["content-type"].startswith("multipart/related")
    assert len(response.content) > 32 * 32 * 2
    # bulk data as OHIF's singlepart option asks for it: one bare body
    bulk = item["7FE00010"]["BulkDataURI"]
    single = httpx.get(bulk, headers={"Accept": "application/octet-stream", "Origin": ORIGIN})
    assert single.status_code == 200, single.text[:300]
    assert single.headers["content-type"] == "application/octet-stream"
    assert len(single.content) == 32 * 32 * 2
    frame = _get(node, f"{base}/frames/1", accept="application/octet-stream")
    assert frame.content == single.content
    several = httpx.get(f"{node.dicomweb_url}{base}/frames/1,1",
                        headers={"Accept": "application/octet-stream"})
    assert several.status_code == 406


def test_rendered_thumbnails(node: RunningNode) -> None:
    (item, *_) = _get(node, f"/studies/{STUDY}/series/{SERIES}/metadata").json()
    base = f"/studies/{STUDY}/series/{SERIES}/instances/{_value(item, '00080018')}"
    rendered = _get(node, f"{base}/rendered", accept="image/jpeg")
    assert rendered.headers["content-type"] == "image/jpeg"
    thumbnail = _get(node, f"{base}/thumbnail", accept="image/jpeg")
    assert thumbnail.content[:2] == b"\xff\xd8"


def test_the_upload_dialog_stores_over_stow(node: RunningNode) -> None:
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="OHIF2",
                     size=16)
    body, content_type = multipart_related([("application/dicom", to_bytes(ds))])
    response = httpx.post(f"{node.dicomweb_url}/studies", content=body,
                          headers={"Origin": ORIGIN, "Accept": "application/dicom+json",
                                   "Content-Type": content_type})
    assert response.status_code == 200, response.text[:300]
    assert response.headers["access-control-allow-origin"] == ORIGIN
    stored = node.data_dir / node.services.connections.get().execute(
        "SELECT path FROM instances WHERE sop_instance_uid = ?",
        (str(ds.SOPInstanceUID),)).fetchone()[0]
    assert pydicom.dcmread(stored).PatientID == "OHIF2"
