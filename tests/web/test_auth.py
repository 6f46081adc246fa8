"""REST security: bearer tokens (read and admin scopes), CORS, and no patient data in
error messages or in logs above debug level."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.uid import generate_uid
from requests import HTTPError

from tests._synthetic import ct_instance, to_bytes
from tests.conftest import RunningNode, start_node
from tests.web._helpers import PROBLEM_JSON, store

READ, ADMIN = "read-token-1234", "admin-token-5678"
ORIGIN = "https://viewer.example.org"
SECRET_NAME = "Secretname^Verysecret"
SECRET_ID = "SECRETPID42"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
            module_catalog_url: str | None) -> Iterator[RunningNode]:
    node = start_node(tmp_path_factory.mktemp("auth"), tiny_model_dir,
                      http={"read_token": READ, "admin_token": ADMIN,
                            "cors_origins": [ORIGIN]},
                      catalog_url=module_catalog_url)
    try:
        node.wait_model()
        yield node
    finally:
        node.stop()


def _problem(response, status: int) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail"} and body["status"] == status
    return str(body["detail"])


READ_ROUTES = [
    ("GET", "/dicom-web/studies/1.2.3/similar"),
    ("GET", "/dicom-web/similar?text=pneumothorax"),
    ("POST", "/dicom-web/similar"),
    ("GET", "/dicom-web/studies/1.2.3/report"),
    ("POST", "/dicom-web/studies/1.2.3/similar/kos"),
    ("GET", "/dicom-web/destinations"),
    ("GET", "/dicom-web/studies"),
]


@pytest.mark.parametrize(("method", "path"), READ_ROUTES)
def test_read_routes_need_a_token(secured: RunningNode, method: str, path: str) -> None:
    with secured.http() as http:
        response = http.request(method, path)
        detail = _problem(response, 401)
        assert "bearer token" in detail
        assert response.headers["www-authenticate"].startswith("Bearer")
    with secured.http("wrong-token") as http:
        assert "not valid" in _problem(http.request(method, path), 401)
    for token in (READ, ADMIN):  # the admin token reads too
        with secured.http(token) as http:
            assert http.request(method, path).status_code not in (401, 403)


def test_admin_routes_refuse_the_read_token(secured: RunningNode) -> None:
    with secured.http() as http:
        assert "admin bearer token" in _problem(http.get("/config/destination"), 401)
    with secured.http(READ) as http:
        detail = _problem(http.get("/config/destination"), 403)
        assert "read token" in detail and "admin token" in detail
    with secured.http(ADMIN) as http:
        assert http.get("/config/destination").status_code == 200


def test_dicomweb_client_with_and_without_the_token(secured: RunningNode) -> None:
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="PTOK",
                     size=16)
    store(secured, [ds])
    anonymous = DICOMwebClient(url=secured.dicomweb_url)
    anonymous.set_http_retry_params(retry=False)
    with pytest.raises(HTTPError) as info:
        anonymous.search_for_studies(search_filters={"PatientID": "PTOK"})
    assert info.value.response.status_code == 401
    client = DICOMwebClient(url=secured.dicomweb_url,
                            headers={"Authorization": f"Bearer {READ}"})
    found = client.search_for_studies(search_filters={"PatientID": "PTOK"})
    assert [f["0020000D"]["Value"][0] for f in found] == [ds.StudyInstanceUID]


def test_cors_when_configured(secured: RunningNode) -> None:
    with secured.http(READ) as http:
        preflight = http.options("/dicom-web/studies/1.2.3/similar", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        response = http.get("/dicom-web/similar", params={"text": "x"},
                            headers={"Origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "precedent-consensus" in response.headers[
            "access-control-expose-headers"].lower()
        other = http.get("/dicom-web/destinations", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_when_not_configured(make_node) -> None:  # type: ignore[no-untyped-def]
    node: RunningNode = make_node()
    with node.http() as http:
        response = http.get("/dicom-web/destinations", headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers


def test_no_patient_data_in_errors_or_logs(secured: RunningNode,
                                           caplog: pytest.LogCaptureFixture) -> None:
    from tests.web.test_reports import comprehensive_sr

    caplog.set_level(logging.INFO)
    study_uid = generate_uid()
    image = ct_instance(study_uid=study_uid, series_uid=generate_uid(), patient_id=SECRET_ID,
                        size=16)
    image.PatientName = SECRET_NAME
    sr = comprehensive_sr(study_uid=generate_uid(), patient_id=SECRET_ID, text="Findings.")
    sr.PatientName = SECRET_NAME
    store(secured, [image, sr])
    secured.wait_indexed()
    details = []
    with secured.http(READ) as http:
        details.append(_problem(http.get(f"/dicom-web/studies/{sr.StudyInstanceUID}/similar"),
                                409))
        details.append(_problem(http.post("/dicom-web/similar", content=to_bytes(sr),
                                          headers={"Content-Type": "application/dicom"}), 400))
        details.append(_problem(http.get(f"/dicom-web/studies/{study_uid}/report"), 404))
        details.append(_problem(http.post(f"/dicom-web/studies/{study_uid}/similar/kos",
                                          json={"Modality": "MR"}), 409))
        details.append(_problem(http.get(f"/dicom-web/studies/{study_uid}/similar",
                                         params={"StudyDate": SECRET_NAME}), 400))
        buffer = io.BytesIO()
        Image.new("L", (8, 8)).save(buffer, "PNG")
        assert http.post("/dicom-web/similar", content=buffer.getvalue(),
                         headers={"Content-Type": "image/png"}).status_code == 200
    for detail in details[:-1]:
        assert "Secretname" not in detail and SECRET_ID not in detail, detail
    # the node's side (the test's own HTTP client logs its URLs, which is not the node)
    ours = ("node", "indexer", "uvicorn", "pynetdicom", "highdicom", "fastapi")
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.levelno > logging.DEBUG and r.name.split(".")[0] in ours)
    assert "Secretname" not in logged and SECRET_ID not in logged


@pytest.mark.parametrize("path", ["/dicom-web/studies", "/dicom-web/similar?text=x",
                                  "/config/destination", "/admin/operations/1"])
def test_a_non_ascii_token_gets_401_not_500(secured: RunningNode, path: str) -> None:
    """Issue 9, defect 3: hmac.compare_digest raised TypeError on non-ASCII text."""
    header = {"Authorization": "Bearer tökén-ü€".encode()}
    with httpx.Client(base_url=secured.http_url, headers=header, timeout=30) as http:
        assert "not valid" in _problem(http.get(path), 401)


def test_a_configured_non_ascii_token_is_accepted_as_utf8(make_node) -> None:  # type: ignore[no-untyped-def]
    node: RunningNode = make_node(no_model=True, http={"read_token": "lesen-ß-✓"})
    with httpx.Client(base_url=node.http_url, timeout=30) as http:
        ok = http.get("/dicom-web/studies",
                      headers={"Authorization": "Bearer lesen-ß-✓".encode()})
        assert ok.status_code == 200, ok.text
        assert http.get("/dicom-web/studies", headers={
            "Authorization": b"Bearer lesen-ss"}).status_code == 401


def test_admin_routes_need_the_token_the_node_made(make_node) -> None:  # type: ignore[no-untyped-def]
    """No admin token configured: the node made one; without it, 401."""
    node: RunningNode = make_node(no_model=True)
    token_file = node.data_dir / "admin-token"
    assert node.admin_token == token_file.read_text().strip()
    with node.http() as anonymous:
        assert "admin bearer token" in _problem(anonymous.get("/config/source"), 401)
        assert _problem(anonymous.delete("/dicom-web/studies/1.2.3"), 401)
    with node.http(node.admin_token) as admin:
        assert admin.get("/config/source").status_code == 200
