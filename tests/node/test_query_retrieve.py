"""C-FIND, C-MOVE and C-GET against a real node, driven by dcmtk's findscu, movescu and
getscu; the move destinations are dcmtk's storescp and Orthanc."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from node.storage import aes
from tests._peers import findscu, getscu, movescu, start_storescp
from tests._synthetic import ct_instance, to_bytes
from tests.conftest import BACKENDS, catalog_for

# three patients, four studies, five series, seven instances
S1, S2, S3, S4 = "1.2.826.0.1.9.1", "1.2.826.0.1.9.2", "1.2.826.0.1.9.3", "1.2.826.0.1.9.4"
S1_CT, S1_MR, S2_CT, S3_US, S4_CT = (S1 + ".1", S1 + ".2", S2 + ".1", S3 + ".1", S4 + ".1")


def _catalogue() -> list[Dataset]:
    def make(study: str, series: str, patient: str, name: str, date: str, time_: str,
             modality: str, n: int) -> list[Dataset]:
        out = []
        for k in range(n):
            ds = ct_instance(study_uid=study, series_uid=series, patient_id=patient,
                             modality=modality, study_date=date, instance_number=k + 1,
                             size=16, seed=k)
            ds.PatientName, ds.StudyTime = name, time_
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{series}.{k + 1}"
            out.append(ds)
        return out

    return [
        *make(S1, S1_CT, "P1", "Doe^John", "20240101", "081500", "CT", 2),
        *make(S1, S1_MR, "P1", "Doe^John", "20240101", "081500", "MR", 1),
        *make(S2, S2_CT, "P2", "Doe^Jane", "20240315", "143000", "CT", 1),
        *make(S3, S3_US, "P3", "Smith^Anna", "20230601", "120030", "US", 2),
        *make(S4, S4_CT, "P1", "Doe^John", "20221224", "235959", "CT", 1),
    ]


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    """The catalog matching and retrieval run on: SQLite, then PostgreSQL."""
    return catalog_for(request, request.param)


@pytest.fixture(scope="module", params=BACKENDS)
def qr_node(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.conftest import start_node

    node = start_node(tmp_path_factory.mktemp("qr-node"), None,
                      catalog_url=catalog_for(request, request.param))
    for ds in _catalogue():
        node.services.ingest.store(to_bytes(ds), source="TEST")
    yield node
    node.stop()


def _find(node, keys: dict[str, str], tmp_path: Path, model: str = "-S") -> list[Dataset]:  # type: ignore[no-untyped-def]
    out = tmp_path / f"find-{time.monotonic_ns()}"
    result = findscu(node.dimse_port, keys, called=node.ae_title, model=model, out_dir=out)
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr and "Failed" not in result.stderr, result.stderr
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def _uids(answers: list[Dataset], keyword: str) -> set[str]:
    return {str(a.get(keyword)) for a in answers}


# --------------------------------------------------------------------------- C-FIND


def test_patient_level_patient_root(qr_node, tmp_path: Path) -> None:
    answers = _find(qr_node, {"QueryRetrieveLevel": "PATIENT", "PatientName": "Doe*",
                              "PatientID": "", "NumberOfPatientRelatedStudies": "",
                              "NumberOfPatientRelatedInstances": ""}, tmp_path, model="-P")
    by_id = {a.PatientID: a for a in answers}
    assert set(by_id) == {"P1", "P2"}
    assert by_id["P1"].PatientName == "Doe^John"
    assert by_id["P1"].NumberOfPatientRelatedStudies == 2
    assert by_id["P1"].NumberOfPatientRelatedInstances == 4
    assert all(a.QueryRetrieveLevel == "PATIENT" for a in answers)


@pytest.mark.parametrize(("keys", "expected"), [
    ({}, {S1, S2, S3, S4}),                                  # universal matching
    ({"PatientID": "P1"}, {S1, S4}),                         # single value
    ({"PatientName": "doe^j*"}, {S1, S2, S4}),               # wildcard, PN case-insensitive
    ({"PatientName": "?oe^Ja?e"}, {S2}),                     # ? matches one character
    ({"PatientName": "Doe"}, set()),                         # single value is not a prefix
    ({"StudyDate": "20240101"}, {S1}),
    ({"StudyDate": "20240101-20241231"}, {S1, S2}),          # closed range
    ({"StudyDate": "-20231231"}, {S3, S4}),                  # open start
    ({"StudyDate": "20240301-"}, {S2}),                      # open end
    ({"StudyTime": "1200-1300"}, {S3}),                      # 12:00:30 is within 1300
    ({"StudyTime": "-0900"}, {S1}),
    ({"StudyInstanceUID": f"{S1}\\{S3}"}, {S1, S3}),         # UID list
    ({"ModalitiesInStudy": "MR"}, {S1}),
    ({"ModalitiesInStudy": "US\\MR"}, {S1, S3}),
    ({"AccessionNumber": "ACCP*", "PatientID": "P2"}, {S2}),  # keys combine with AND
])
def test_study_level_matching(qr_node, tmp_path: Path, keys: dict[str, str],
                              expected: set[str]) -> None:
    query = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", **keys}
    assert _uids(_find(qr_node, query, tmp_path), "StudyInstanceUID") == expected


def test_study_level_returns_computed_attributes(qr_node, tmp_path: Path) -> None:
    answers = _find(qr_node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": S1,
                              "ModalitiesInStudy": "", "NumberOfStudyRelatedSeries": "",
                              "NumberOfStudyRelatedInstances": "", "PatientName": "",
                              "StudyDate": "", "RetrieveAETitle": "", "PatientWeight": ""},
                    tmp_path)
    assert len(answers) == 1
    (study,) = answers
    assert list(study.ModalitiesInStudy) == ["CT", "MR"]
    assert study.NumberOfStudyRelatedSeries == 2
    assert study.NumberOfStudyRelatedInstances == 3
    assert study.PatientName == "Doe^John" and study.StudyDate == "20240101"
    assert study.RetrieveAETitle == qr_node.ae_title
    assert "PatientWeight" in study and study.PatientWeight is None  # not catalogued: empty


def test_patient_root_study_level_under_a_patient(qr_node, tmp_path: Path) -> None:
    answers = _find(qr_node, {"QueryRetrieveLevel": "STUDY", "PatientID": "P1",
                              "StudyInstanceUID": ""}, tmp_path, model="-P")
    assert _uids(answers, "StudyInstanceUID") == {S1, S4}


def test_series_level(qr_node, tmp_path: Path) -> None:
    answers = _find(qr_node, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": S1,
                              "SeriesInstanceUID": "", "Modality": "",
                              "NumberOfSeriesRelatedInstances": ""}, tmp_path)
    got = {a.SeriesInstanceUID: (a.Modality, a.NumberOfSeriesRelatedInstances) for a in answers}
    assert got == {S1_CT: ("CT", 2), S1_MR: ("MR", 1)}
    assert all(a.StudyInstanceUID == S1 for a in answers)


def test_series_level_with_modality_list_across_studies(qr_node, tmp_path: Path) -> None:
    answers = _find(qr_node, {"QueryRetrieveLevel": "SERIES", "Modality": "MR\\US",
                              "SeriesInstanceUID": ""}, tmp_path)
    assert _uids(answers, "SeriesInstanceUID") == {S1_MR, S3_US}


def test_image_level(qr_node, tmp_path: Path) -> None:
    answers = _find(qr_node, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": S3,
                              "SeriesInstanceUID": S3_US, "SOPInstanceUID": "",
                              "InstanceNumber": "", "SOPClassUID": ""}, tmp_path)
    assert _uids(answers, "SOPInstanceUID") == {S3_US + ".1", S3_US + ".2"}
    assert {int(a.InstanceNumber) for a in answers} == {1, 2}
    single = _find(qr_node, {"QueryRetrieveLevel": "IMAGE", "SeriesInstanceUID": S3_US,
                             "InstanceNumber": "2", "SOPInstanceUID": ""}, tmp_path)
    assert _uids(single, "SOPInstanceUID") == {S3_US + ".2"}


def _find_failure(node, keys: dict[str, str], model: str = "-S") -> str:  # type: ignore[no-untyped-def]
    result = findscu(node.dimse_port, keys, called=node.ae_title, model=model, extra=["-d"])
    return result.stdout + result.stderr


def test_bad_date_is_refused_with_a_comment(qr_node) -> None:
    log = _find_failure(qr_node, {"QueryRetrieveLevel": "STUDY", "StudyDate": "2024-01-0x"})
    assert "0xa900" in log.lower()
    assert "StudyDate: use YYYYMMDD or a range YYYYMMDD-YYYYMMDD" in log


def test_missing_level_is_refused_with_a_comment(qr_node) -> None:
    log = _find_failure(qr_node, {"PatientID": "P1"})
    assert "QueryRetrieveLevel is missing" in log


def test_patient_level_in_study_root_is_refused(qr_node) -> None:
    log = _find_failure(qr_node, {"QueryRetrieveLevel": "PATIENT", "PatientID": ""})
    assert "PATIENT level needs Patient Root, not Study Root" in log


def test_bad_uid_is_refused_with_a_comment(qr_node) -> None:
    log = _find_failure(qr_node, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.x"})
    assert "StudyInstanceUID: not a UID (digits and dots)" in log


# --------------------------------------------------------------------------- C-MOVE


def test_move_study_to_storescp(qr_node, tmp_path: Path) -> None:
    scp = start_storescp(tmp_path, aet="MOVEDEST")
    try:
        aes.add_destination(qr_node.services.connections.get(), "MOVEDEST",
                            host="127.0.0.1", port=scp.port)
        result = movescu(qr_node.dimse_port, {"QueryRetrieveLevel": "STUDY",
                                              "StudyInstanceUID": S1},
                         called=qr_node.ae_title, move_to="MOVEDEST")
        assert result.returncode == 0, result.stderr
        received = {str(pydicom.dcmread(p).SOPInstanceUID) for p in scp.received()}
        assert received == {S1_CT + ".1", S1_CT + ".2", S1_MR + ".1"}
    finally:
        scp.stop()
        aes.remove_destination(qr_node.services.connections.get(), "MOVEDEST")


def test_move_series_and_image_levels(qr_node, tmp_path: Path) -> None:
    scp = start_storescp(tmp_path, aet="MOVEDEST2")
    try:
        aes.add_destination(qr_node.services.connections.get(), "MOVEDEST2",
                            host="127.0.0.1", port=scp.port)
        movescu(qr_node.dimse_port, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": S3,
                                     "SeriesInstanceUID": S3_US},
                called=qr_node.ae_title, move_to="MOVEDEST2")
        movescu(qr_node.dimse_port, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": S2,
                                     "SeriesInstanceUID": S2_CT,
                                     "SOPInstanceUID": S2_CT + ".1"},
                called=qr_node.ae_title, move_to="MOVEDEST2")
        received = {str(pydicom.dcmread(p).SOPInstanceUID) for p in scp.received()}
        assert received == {S3_US + ".1", S3_US + ".2", S2_CT + ".1"}
    finally:
        scp.stop()
        aes.remove_destination(qr_node.services.connections.get(), "MOVEDEST2")


def test_move_patient_root_patient_level(qr_node, tmp_path: Path) -> None:
    scp = start_storescp(tmp_path, aet="MOVEDEST3")
    try:
        aes.add_destination(qr_node.services.connections.get(), "MOVEDEST3",
                            host="127.0.0.1", port=scp.port)
        result = movescu(qr_node.dimse_port, {"QueryRetrieveLevel": "PATIENT",
                                              "PatientID": "P2"},
                         called=qr_node.ae_title, move_to="MOVEDEST3", model="-P")
        assert result.returncode == 0, result.stderr
        assert [str(pydicom.dcmread(p).SOPInstanceUID) for p in scp.received()] == [
            S2_CT + ".1"]
    finally:
        scp.stop()
        aes.remove_destination(qr_node.services.connections.get(), "MOVEDEST3")


def test_move_to_unknown_destination_is_refused(qr_node) -> None:
    result = movescu(qr_node.dimse_port, {"QueryRetrieveLevel": "STUDY",
                                          "StudyInstanceUID": S1},
                     called=qr_node.ae_title, move_to="NOBODY")
    assert "MoveDestinationUnknown" in result.stderr + result.stdout


def test_move_without_a_unique_key_is_refused(qr_node, tmp_path: Path) -> None:
    scp = start_storescp(tmp_path, aet="MOVEDEST4")
    try:
        aes.add_destination(qr_node.services.connections.get(), "MOVEDEST4",
                            host="127.0.0.1", port=scp.port)
        result = movescu(qr_node.dimse_port, {"QueryRetrieveLevel": "STUDY",
                                              "PatientName": "Doe*"},
                         called=qr_node.ae_title, move_to="MOVEDEST4", extra=["-d"])
        log = result.stdout + result.stderr
        assert "0xa900" in log.lower() and "no unique key value to retrieve" in log
        assert scp.received() == []
    finally:
        scp.stop()
        aes.remove_destination(qr_node.services.connections.get(), "MOVEDEST4")


@pytest.mark.slow
def test_move_to_orthanc(qr_node, make_orthanc) -> None:
    orthanc = make_orthanc()
    aes.add_destination(qr_node.services.connections.get(), orthanc.aet,
                        host="127.0.0.1", port=orthanc.dimse_port)
    try:
        result = movescu(qr_node.dimse_port, {"QueryRetrieveLevel": "STUDY",
                                              "StudyInstanceUID": S3},
                         called=qr_node.ae_title, move_to=orthanc.aet)
        assert result.returncode == 0, result.stderr
        with orthanc.client() as http:
            studies = http.post("/tools/find", json={"Level": "Instance", "Query": {},
                                                     "Expand": True}).json()
        assert {s["MainDicomTags"]["SOPInstanceUID"] for s in studies} == {
            S3_US + ".1", S3_US + ".2"}
    finally:
        aes.remove_destination(qr_node.services.connections.get(), orthanc.aet)


# --------------------------------------------------------------------------- C-GET


def test_get_study(qr_node, tmp_path: Path) -> None:
    out = tmp_path / "get"
    result = getscu(qr_node.dimse_port, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": S1},
                    called=qr_node.ae_title, out_dir=out)
    assert result.returncode == 0, result.stderr
    got = {str(pydicom.dcmread(p).SOPInstanceUID) for p in out.iterdir()}
    assert got == {S1_CT + ".1", S1_CT + ".2", S1_MR + ".1"}


def test_get_series_patient_root(qr_node, tmp_path: Path) -> None:
    out = tmp_path / "get"
    result = getscu(qr_node.dimse_port, {"QueryRetrieveLevel": "SERIES", "PatientID": "P3",
                                         "StudyInstanceUID": S3, "SeriesInstanceUID": S3_US},
                    called=qr_node.ae_title, out_dir=out, model="-P")
    assert result.returncode == 0, result.stderr
    assert len(list(out.iterdir())) == 2


def test_get_of_nothing_stored_succeeds_empty(qr_node, tmp_path: Path) -> None:
    out = tmp_path / "get"
    result = getscu(qr_node.dimse_port, {"QueryRetrieveLevel": "STUDY",
                                         "StudyInstanceUID": "1.2.3.999"},
                    called=qr_node.ae_title, out_dir=out)
    assert result.returncode == 0, result.stderr
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- permissions


def _guarded_node(make_node, sources: dict[str, str]):  # type: ignore[no-untyped-def]
    """A node that admits only ``sources`` (AE title → permissions), holding one study."""
    node = make_node(no_model=True, node={"allow_any_source": False})
    conn = node.services.connections.get()
    for ae_title, permissions in sources.items():
        aes.add_source(conn, ae_title, permissions=aes.parse_permissions(permissions))
    for ds in _catalogue()[:1]:
        node.services.ingest.store(to_bytes(ds), source="TEST")
    return node


def _final_status(responses) -> Dataset:  # type: ignore[no-untyped-def]
    statuses = [status for status, _ in responses]
    assert statuses, "no response"
    return statuses[-1]


def _study(uid: str = S1) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", uid
    return query


def test_move_without_the_move_permission_is_not_authorized(make_node, make_storescp) -> None:
    """C-MOVE from a source that may find but not move: 0x0124 Refused: Not Authorized,
    the comment naming the permission (not "move destination unknown"), and nothing is
    sent to the destination."""
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    scp = make_storescp()
    node = _guarded_node(make_node, {"FINDER": "echo,find"})
    aes.add_destination(node.services.connections.get(), scp.aet, host="127.0.0.1",
                        port=scp.port)
    ae = AE(ae_title="FINDER")
    ae.add_requested_context(MOVE)
    assoc = ae.associate("127.0.0.1", node.dimse_port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        status = _final_status(assoc.send_c_move(_study(), scp.aet, MOVE))
    finally:
        assoc.release()
    assert status.Status == 0x0124
    assert status.ErrorComment == "this AE title may not use C-MOVE here: no move permission"
    assert scp.received() == []


def test_c_get_needs_the_get_permission(make_node, tmp_path: Path) -> None:
    """A source with move but not get is refused C-GET (0x0124, naming get); one with get
    retrieves (dcmtk getscu)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    node = _guarded_node(make_node, {"MOVER": "echo,find,move", "GETSCU": "get"})
    ae = AE(ae_title="MOVER")
    ae.add_requested_context(GET)
    assoc = ae.associate("127.0.0.1", node.dimse_port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        status = _final_status(assoc.send_c_get(_study(), GET))
    finally:
        assoc.release()
    assert status.Status == 0x0124
    assert status.ErrorComment == "this AE title may not use C-GET here: no get permission"
    out = tmp_path / "got"
    result = getscu(node.dimse_port, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": S1},
                    called=node.ae_title, out_dir=out)
    assert result.returncode == 0, result.stderr
    assert len(list(out.iterdir())) == 1


@pytest.mark.parametrize("catalog_url", [None])  # an old SQLite catalog, opened again
def test_sources_allowed_to_move_before_get_existed_keep_c_get(make_node,
                                                               tmp_path: Path) -> None:
    """A catalog from before the get permission: its sources with move (which covered
    C-GET then) are given get once, when the node opens it; a source added later with
    move alone is not. The command line takes get too."""
    import json
    import os
    import sqlite3
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    old = sqlite3.connect(data_dir / "catalog.sqlite")
    old.execute("CREATE TABLE ae_sources (ae_title TEXT PRIMARY KEY, host TEXT, "
                "permissions TEXT NOT NULL)")
    old.execute("INSERT INTO ae_sources VALUES ('GETSCU', NULL, 'echo,find,move,store')")
    old.commit()
    old.close()
    node = make_node(no_model=True, data_dir=data_dir, node={"allow_any_source": False})
    conn = node.services.connections.get()
    source = aes.get_source(conn, "GETSCU")
    assert source is not None and source.allows(aes.PermissionValues.GET)
    node.services.ingest.store(to_bytes(_catalogue()[0]), source="TEST")
    out = tmp_path / "got"
    result = getscu(node.dimse_port, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": S1},
                    called=node.ae_title, out_dir=out)
    assert result.returncode == 0, result.stderr
    assert len(list(out.iterdir())) == 1

    aes.add_source(conn, "NEWMOVER", permissions=aes.parse_permissions("move"))
    from node.storage import connect

    connect(data_dir / "catalog.sqlite").close()  # opened again: the migration ran once
    new = aes.get_source(conn, "NEWMOVER")
    assert new is not None and not new.allows(aes.PermissionValues.GET)

    node.stop()  # the command line on the folder, the node no longer running
    cli = [sys.executable, "-m", "node", "ae", "source"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    added = subprocess.run([*cli, "add", "PACS", "--permissions", "echo,store,find,move,get",
                            "--data-dir", str(data_dir)], capture_output=True, text=True,
                           timeout=60, env=env)
    assert added.returncode == 0, added.stderr
    listed = subprocess.run([*cli, "list", "--json", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=60, env=env)
    pacs = next(s for s in json.loads(listed.stdout) if s["ae_title"] == "PACS")
    assert pacs["permissions"] == ["echo", "find", "get", "move", "store"]


def test_status_names_are_in_pynetdicom_categories() -> None:
    """The node's named statuses: pynetdicom's Status where it has them, the others in
    the category pynetdicom's tables give them."""
    from pynetdicom.status import (
        STATUS_CANCEL,
        STATUS_FAILURE,
        STATUS_PENDING,
        STATUS_SUCCESS,
        Status,
        code_to_category,
    )

    from node.dimse.status_codes import DimseStatusValues as S

    assert (S.SUCCESS, S.PENDING, S.CANCEL, S.MOVE_DESTINATION_UNKNOWN) == (
        Status.SUCCESS, Status.PENDING, Status.CANCEL, Status.MOVE_DESTINATION_UNKNOWN)
    expected = {S.SUCCESS: STATUS_SUCCESS, S.PENDING: STATUS_PENDING,
                S.CANCEL: STATUS_CANCEL}
    for status in S:
        assert code_to_category(status) == expected.get(status, STATUS_FAILURE), status.name
