"""QIDO-RS and WADO-RS with values the two catalog dialects could read differently: a
wildcard pattern holding ``%`` and ``_`` (PostgreSQL's LIKE characters, literal in DICOM),
and InstanceNumber values that are not integers (``1.5``, absent), which PostgreSQL's
``CAST`` would refuse. Run on both back ends (tests/web/conftest.py)."""

from __future__ import annotations

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from tests._synthetic import ct_instance
from tests.conftest import RunningNode
from tests.web._helpers import store

STUDY = "1.2.826.0.1.3680043.77.1"


def _study_uids(node: RunningNode, **filters: str) -> set[str]:
    with node.http() as http:
        response = http.get("/dicom-web/studies", params=filters)
    assert response.status_code in (200, 204), response.text
    return {a["0020000D"]["Value"][0] for a in response.json()} if response.content else set()


def test_percent_and_underscore_in_a_wildcard_match_only_themselves(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    uids = {}
    for n, patient in enumerate(["AB%1", "ABC1", "A_C1", "AXC1"]):
        uid = f"1.2.826.0.1.3680043.77.2.{n}"
        ds = ct_instance(study_uid=uid, series_uid=f"{uid}.1", patient_id=patient, size=8)
        ds.StudyDescription = f"CHEST {patient}"
        store(node, [ds])
        uids[patient] = uid
    assert _study_uids(node, PatientID="AB%*") == {uids["AB%1"]}
    assert _study_uids(node, PatientID="A_*") == {uids["A_C1"]}
    assert _study_uids(node, PatientID="A?C1") == {uids["ABC1"], uids["A_C1"], uids["AXC1"]}
    assert _study_uids(node, StudyDescription="*%1") == {uids["AB%1"]}
    assert _study_uids(node, StudyDescription="chest*") == set()  # case-sensitive
    assert _study_uids(node, PatientName="test^a_*") == {uids["A_C1"]}  # PN: any case


def _instance(number: bytes | None, k: int) -> Dataset:
    ds = ct_instance(study_uid=STUDY, series_uid=f"{STUDY}.1", patient_id="IN1", size=8,
                     seed=k)
    del ds.InstanceNumber
    if number is not None:  # as a sender may write it: not an integer string
        ds[0x00200013] = RawDataElement(Tag(0x00200013), "IS", len(number), number, 0,
                                        False, True)
    return ds


def test_instance_numbers_that_are_not_integers_break_no_query(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    instances = [_instance(b"2 ", 0), _instance(b"1.5 ", 1), _instance(None, 2),
                 _instance(b"1A", 3)]
    store(node, instances)
    with node.http() as http:
        listed = http.get(f"/dicom-web/studies/{STUDY}/instances")
        assert listed.status_code == 200 and len(listed.json()) == 4
        second = http.get(f"/dicom-web/studies/{STUDY}/instances",
                          params={"InstanceNumber": "2"})
        assert second.status_code == 200
        assert [a["00080018"]["Value"][0] for a in second.json()] == \
            [str(instances[0].SOPInstanceUID)]
        metadata = http.get(f"/dicom-web/studies/{STUDY}/metadata")  # ordered by number
        assert metadata.status_code == 200 and len(metadata.json()) == 4
