"""STOW-RS against a real node through dicomweb-client: the same durable path as C-STORE,
the standard response, and every failure a sender can cause."""

from __future__ import annotations

import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from node.web import stow
from tests._peers import test_files
from tests._synthetic import ct_instance, multipart_related, to_bytes


def _datasets(names: list[str]) -> list[Dataset]:
    by_name = {f.name: f for f in test_files()}
    return [pydicom.dcmread(by_name[n]) for n in names]


def _post(client: DICOMwebClient, path: str, body: bytes,
          content_type: str) -> requests.Response:
    return client._session.post(f"{client.base_url}{path}", data=body,
                                headers={"Content-Type": content_type})


def test_store_instances_same_path_as_c_store(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    client = DICOMwebClient(node.dicomweb_url)
    datasets = _datasets(["CT_small.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm",
                          "MR_small_bigendian.dcm", "test-SR.dcm"])
    answer = client.store_instances(datasets)
    stored = {str(i.ReferencedSOPInstanceUID) for i in answer.ReferencedSOPSequence}
    assert stored == {str(d.SOPInstanceUID) for d in datasets}
    assert "FailedSOPSequence" not in answer
    for item in answer.ReferencedSOPSequence:
        assert item.RetrieveURL.endswith(f"/instances/{item.ReferencedSOPInstanceUID}")
    conn = node.services.connections.get()
    rows = [tuple(r) for r in conn.execute("SELECT sop_instance_uid, source, path FROM instances")]
    assert {r[0] for r in rows} == stored and {r[1] for r in rows} == {"STOW-RS"}
    queued = conn.execute("SELECT sop_instance_uid, count(*) FROM work "
                          "GROUP BY sop_instance_uid").fetchall()
    assert {r[0]: r[1] for r in queued} == {uid: 1 for uid in stored}
    for ds, (_, _, path) in zip(sorted(datasets, key=lambda d: str(d.SOPInstanceUID)),
                                sorted(rows), strict=True):
        on_disk = pydicom.dcmread(node.data_dir / path)
        assert on_disk.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        assert on_disk.get("PixelData") == ds.get("PixelData")
    # and they are found by QIDO-RS and retrieved by WADO-RS
    found = client.search_for_instances()
    assert {i["00080018"]["Value"][0] for i in found} == stored


def test_bytes_on_disk_are_the_part_bytes(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    client = DICOMwebClient(node.dicomweb_url)
    data = (next(f for f in test_files() if f.name == "JPEG2000.dcm")).read_bytes()
    body, content_type = multipart_related([("application/dicom", data)])
    response = _post(client, "/studies", body, content_type)
    assert response.status_code == 200
    (path,) = [r[0] for r in node.services.connections.get().execute(
        "SELECT path FROM instances")]
    assert (node.data_dir / path).read_bytes() == data


def test_study_in_path_mismatch_fails_that_instance(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    client = DICOMwebClient(node.dicomweb_url)
    good = ct_instance(study_uid="1.2.826.0.1.8", series_uid="1.2.826.0.1.8.1",
                       patient_id="PS")
    other = ct_instance(study_uid="1.2.826.0.1.9", series_uid="1.2.826.0.1.9.1",
                        patient_id="PS")
    answer = client.store_instances([good, other], study_instance_uid="1.2.826.0.1.8")
    assert [str(i.ReferencedSOPInstanceUID) for i in answer.ReferencedSOPSequence] == [
        str(good.SOPInstanceUID)]
    (failed,) = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == other.SOPInstanceUID
    assert failed.FailureReason == stow.STUDY_MISMATCH == 0xA900
    assert answer.RetrieveURL.endswith("/studies/1.2.826.0.1.8")
    # the HTTP status is 202 (some failed) and the reasons are in a Warning header
    body, content_type = multipart_related([("application/dicom", to_bytes(other)),
                                     ("application/dicom", to_bytes(good))])
    response = _post(client, "/studies/1.2.826.0.1.8", body, content_type)
    assert response.status_code == 202
    assert "Study Instance UID differs from the request's" in response.headers["Warning"]


def test_all_failed_is_409_with_reasons(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    client = DICOMwebClient(node.dicomweb_url)
    broken = b"DICM but not really" * 10
    no_uids = ct_instance(study_uid="1.2.826.0.1.13", series_uid="1.2.826.0.1.13.1",
                          patient_id="PU")
    del no_uids.SOPInstanceUID
    body, content_type = multipart_related([("application/dicom", broken),
                                     ("application/dicom", to_bytes(no_uids)),
                                     ("application/json", b"{}")])
    response = _post(client, "/studies", body, content_type)
    assert response.status_code == 409
    answer = Dataset.from_json(response.json())
    reasons = [int(i.FailureReason) for i in answer.FailedSOPSequence]
    assert reasons[0] >> 12 == 0xC and reasons[1] >> 12 == 0xC  # cannot understand
    assert reasons[2] == 0xC000
    assert "ReferencedSOPSequence" not in answer
    warning = response.headers["Warning"]
    assert "the data set cannot be decoded" in warning
    assert "SOP Instance UID (0008,0018) is missing" in warning
    assert "part is application/json, not application/dicom" in warning
    # through dicomweb-client the 409 is an HTTPError carrying the same answer
    with pytest.raises(requests.HTTPError) as info:
        client.store_instances([no_uids])
    assert info.value.response.status_code == 409


def test_duplicates_follow_the_policy(make_node) -> None:  # type: ignore[no-untyped-def]
    ds = ct_instance(study_uid="1.2.826.0.1.10", series_uid="1.2.826.0.1.10.1",
                     patient_id="PD")
    keep = DICOMwebClient(make_node(no_model=True).dicomweb_url)
    for _ in range(2):  # keep first: the second copy is answered as stored
        answer = keep.store_instances([ds])
        assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    reject = DICOMwebClient(make_node(no_model=True,
                                      node={"duplicate_policy": "reject"}).dicomweb_url)
    reject.store_instances([ds])
    with pytest.raises(requests.HTTPError) as info:
        reject.store_instances([ds])
    answer = Dataset.from_json(info.value.response.json())
    assert answer.FailedSOPSequence[0].FailureReason == 0xA770
    assert f"SOP Instance UID {ds.SOPInstanceUID} is stored already" in \
        info.value.response.headers["Warning"]


def test_out_of_resources(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True, node={"free_space_reserve_mb": 1 << 40})
    client = DICOMwebClient(node.dicomweb_url)
    ds = ct_instance(study_uid="1.2.826.0.1.11", series_uid="1.2.826.0.1.11.1",
                     patient_id="PF")
    with pytest.raises(requests.HTTPError) as info:
        client.store_instances([ds])
    assert info.value.response.status_code == 409
    answer = Dataset.from_json(info.value.response.json())
    assert answer.FailedSOPSequence[0].FailureReason == 0xA700


def _problem(response: requests.Response) -> dict:  # type: ignore[type-arg]
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()  # type: ignore[no-any-return]


def test_wrong_content_type_is_415_saying_what_to_send(make_node) -> None:  # type: ignore[no-untyped-def]
    client = DICOMwebClient(make_node(no_model=True).dicomweb_url)
    response = _post(client, "/studies", b"{}", "application/json")
    assert response.status_code == 415
    assert _problem(response)["detail"] == (
        'STOW-RS on this node takes DICOM files: send Content-Type: multipart/related; '
        'type="application/dicom"; boundary=…, one DICOM Part 10 file per part '
        "(this request has 'application/json')")
    response = _post(client, "/studies", b"", 'multipart/related; type="application/dicom+json"'
                                              "; boundary=x")
    assert response.status_code == 415


def test_missing_boundary_and_empty_body_are_400(make_node) -> None:  # type: ignore[no-untyped-def]
    client = DICOMwebClient(make_node(no_model=True).dicomweb_url)
    response = _post(client, "/studies", b"", 'multipart/related; type="application/dicom"')
    assert response.status_code == 400
    assert _problem(response)["detail"].startswith("the Content-Type has no boundary parameter")
    body, content_type = multipart_related([])
    response = _post(client, "/studies", body, content_type)
    assert response.status_code == 400
    assert _problem(response)["detail"].startswith("the body holds no parts")


def test_too_large_is_413(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True, http={"max_request_bytes": 10_000})
    client = DICOMwebClient(node.dicomweb_url)
    ds = ct_instance(study_uid="1.2.826.0.1.12", series_uid="1.2.826.0.1.12.1",
                     patient_id="PL", size=128)
    body, content_type = multipart_related([("application/dicom", to_bytes(ds))])
    response = _post(client, "/studies", body, content_type)
    assert response.status_code == 413
    assert _problem(response)["detail"] == (
        f"the body is {len(body)} bytes; this node accepts at most 10000 bytes per STOW-RS "
        "request: send fewer instances per request")

    def chunks():  # no Content-Length: the limit holds while streaming
        yield body

    response = client._session.post(f"{client.base_url}/studies", data=chunks(),
                                    headers={"Content-Type": content_type})
    assert response.status_code == 413
    assert _problem(response)["detail"].startswith("the body is over 10000 bytes")


# ------------------------------------------------------------------ hardening (issue 9)


def test_invalid_uid_in_the_path_is_a_400_problem(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    client = DICOMwebClient(node.dicomweb_url)
    ds = ct_instance(study_uid="1.2.826.0.1.14", series_uid="1.2.826.0.1.14.1",
                     patient_id="PV")
    body, content_type = multipart_related([("application/dicom", to_bytes(ds))])
    response = _post(client, "/studies/abc..def", body, content_type)
    assert response.status_code == 400
    assert _problem(response)["detail"] == (
        "StudyInstanceUID 'abc..def' is not a valid UID (digits and dots, at most 64 "
        "characters)")
    assert node.services.connections.get().execute(
        "SELECT count(*) FROM instances").fetchone()[0] == 0


_FULL_DISK_TEST = "tests/web/test_stow.py::test_a_really_full_disk_answers_409_with_a700"


def test_a_really_full_disk_answers_409_with_a700(make_node, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The data folder on a 4 MiB file system, filled over STOW-RS: what fits is stored
    (202, the rest 0xA700, "Refused out of Resources"); once full, a request stores
    nothing: 409 with every part 0xA700 (PS3.18 table 10.5.3-1 and table I.2-2), and the
    reason in words. Everything acknowledged is catalogued and readable."""
    from tests.web._small_fs import on_small_fs

    def fill(mount) -> None:  # type: ignore[no-untyped-def]
        node = make_node(no_model=True, data_dir=mount / "data")
        client = DICOMwebClient(node.dicomweb_url)
        datasets = [ct_instance(study_uid="1.2.826.0.1.15", series_uid="1.2.826.0.1.15.1",
                                patient_id="PFULL", instance_number=i, size=512, seed=i)
                    for i in range(10)]  # 10 × 512 KiB > 4 MiB
        body, content_type = multipart_related([("application/dicom", to_bytes(d)) for d in datasets])
        response = _post(client, "/studies", body, content_type)
        assert response.status_code == 202, response.text[:300]
        answer = Dataset.from_json(response.json())
        assert {int(i.FailureReason) for i in answer.FailedSOPSequence} == {0xA700}
        acknowledged = {str(i.ReferencedSOPInstanceUID) for i in answer.ReferencedSOPSequence}
        assert acknowledged
        rows = dict(node.services.connections.get().execute(
            "SELECT sop_instance_uid, path FROM instances").fetchall())
        assert set(rows) == acknowledged
        for path in rows.values():
            assert pydicom.dcmread(node.data_dir / path).Rows == 512
        assert not list((node.data_dir / "tmp").glob("*.part"))
        # full now: nothing of the next request is stored
        late = ct_instance(study_uid="1.2.826.0.1.15", series_uid="1.2.826.0.1.15.1",
                           patient_id="PFULL", instance_number=99, size=512, seed=99)
        body, content_type = multipart_related([("application/dicom", to_bytes(late))])
        response = _post(client, "/studies", body, content_type)
        assert response.status_code == 409
        assert response.headers["content-type"].startswith("application/dicom+json")
        answer = Dataset.from_json(response.json())
        (failed,) = answer.FailedSOPSequence
        assert failed.FailureReason == 0xA700
        assert failed.ReferencedSOPInstanceUID == late.SOPInstanceUID
        assert "disk" in response.headers["Warning"]  # the reason, in words
        node.stop()

    on_small_fs(_FULL_DISK_TEST, tmp_path, fill)


def test_the_docs_state_the_full_disk_answer_the_node_gives() -> None:
    """docs/api.md promised 507 for a full disk over STOW-RS; PS3.18 table 10.5.3-1 has a
    request that stores nothing answer 409 with the reasons in the payload."""
    from pathlib import Path

    api = (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    rows = [line for line in api.splitlines() if line.startswith("| 507")]
    assert rows == [], rows
    stow = api[api.index("### STOW-RS"):api.index("### Deleting")]
    assert "409" in stow and "0xA700" in stow and "10.5.3-1" in stow


def test_a_part_cut_3000_bytes_short_is_refused(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    client = DICOMwebClient(node.dicomweb_url)
    ds = ct_instance(study_uid="1.2.826.0.1.16", series_uid="1.2.826.0.1.16.1",
                     patient_id="PCUT", size=64)
    whole = to_bytes(ds)
    body, content_type = multipart_related([("application/dicom", whole[:-3000])])
    response = _post(client, "/studies", body, content_type)
    assert response.status_code == 409, response.text[:300]
    (failed,) = Dataset.from_json(response.json()).FailedSOPSequence
    assert int(failed.FailureReason) >> 8 == 0xA9 or int(failed.FailureReason) >> 12 == 0xC
    assert failed.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert node.services.connections.get().execute(
        "SELECT count(*) FROM instances").fetchone()[0] == 0
