"""QIDO-RS conformance by comparison: the same files go to Orthanc (Debian package, its
DICOMweb plugin) and to the node, both through dicomweb-client's STOW-RS; the node's
QIDO-RS answers must carry the same studies, series and instances, with the same values
for the required attributes both return, and the same matches for the same queries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient

from tests._peers import start_orthanc, test_files

pytestmark = pytest.mark.slow

#: differ by design: the character set (Orthanc always names it; the node when needed)
#: and the RetrieveURL (another server); compared separately
_NOT_COMPARED = {"00080005", "00081190"}
#: optional or conditional attributes the catalog does not hold (yet): BitsAllocated,
#: TimezoneOffsetFromUTC, PerformedProcedureStepStartDate and -Time
_NOT_CATALOGUED = {"00280100", "00080201", "00400244", "00400245"}
_UNORDERED = {"00080061", "00080062"}  # ModalitiesInStudy, SOPClassesInStudy

Answer = dict[str, Any]

#: Orthanc 1.10 cannot parse this file (explicit VR with UN elements); the node stores it
ORTHANC_REFUSES = frozenset({"explicit_VR-UN.dcm"})
#: the node refuses these as unreadable (Orthanc stores them): NumberOfFrames '1A', and
#: a last fragment cut short (tests/node/test_dimse_store.py has the answers)
NODE_REFUSES = frozenset({"badVR.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"})
_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None
          ) -> Iterator[tuple[DICOMwebClient, DICOMwebClient]]:
    from tests.conftest import start_node

    folder = tmp_path_factory.mktemp("conformance")
    node = start_node(folder / "node", None, catalog_url=module_catalog_url)
    orthanc = start_orthanc(folder)
    try:
        ours, theirs = DICOMwebClient(node.dicomweb_url), DICOMwebClient(orthanc.dicomweb_url)
        accepted: dict[str, set[str]] = {"node": set(), "orthanc": set()}
        for path in test_files(include_pydicom_data=True):
            ds = pydicom.dcmread(path)
            if path.name in ORTHANC_REFUSES | NODE_REFUSES or not all(
                    pydicom.uid.UID(str(ds.get(k, ""))).is_valid for k in _UIDS):
                continue  # the node refuses invalid UIDs on purpose (tested elsewhere)
            for name, client in (("node", ours), ("orthanc", theirs)):
                try:
                    client.store_instances([ds])
                    accepted[name].add(str(ds.SOPInstanceUID))
                except requests.HTTPError:
                    pass
        assert accepted["node"] == accepted["orthanc"]
        assert len(accepted["node"]) > 100
        yield ours, theirs
    finally:
        orthanc.stop()
        node.stop()


def _uid(answer: Answer, tag: str) -> str:
    return str(answer[tag]["Value"][0])


def _by(answers: list[Answer], tag: str) -> dict[str, Answer]:
    return {_uid(a, tag): a for a in answers if "Value" in a.get(tag, {})}


def _value(answer: Answer, tag: str) -> Any:
    value = answer.get(tag, {}).get("Value") or None  # empty equals absent
    if value and tag in _UNORDERED:
        return sorted(value)
    return value


def _compare(ours: Answer, theirs: Answer, where: str) -> list[str]:
    """Differences on the attributes both return (values; empty equals absent)."""
    problems = []
    for tag in (set(ours) & set(theirs)) - _NOT_COMPARED:
        if _value(ours, tag) != _value(theirs, tag):
            problems.append(f"{where} {tag}: node {_value(ours, tag)!r} "
                            f"orthanc {_value(theirs, tag)!r}")
    return problems


def _retrieve_path(answer: Answer) -> str:
    return str(answer["00081190"]["Value"][0]).split("/dicom-web", 1)[1]


def test_same_studies_with_the_same_required_attributes(peers) -> None:  # type: ignore[no-untyped-def]
    ours_client, theirs_client = peers
    ours = _by(ours_client.search_for_studies(), "0020000D")
    theirs = _by(theirs_client.search_for_studies(), "0020000D")
    assert set(ours) == set(theirs)
    required = set(next(iter(theirs.values()))) - _NOT_COMPARED
    problems = []
    for uid, answer in ours.items():
        assert required <= set(answer), f"study {uid} lacks {required - set(answer)}"
        problems += _compare(answer, theirs[uid], f"study {uid}")
        assert _retrieve_path(answer) == _retrieve_path(theirs[uid])
    assert not problems, "\n".join(problems)


def test_same_series_and_instances_per_study(peers) -> None:  # type: ignore[no-untyped-def]
    ours_client, theirs_client = peers
    problems = []
    for study in _by(ours_client.search_for_studies(), "0020000D"):
        ours_series = _by(ours_client.search_for_series(study), "0020000E")
        theirs_series = _by(theirs_client.search_for_series(study), "0020000E")
        assert set(ours_series) == set(theirs_series), study
        for uid, answer in ours_series.items():
            missing = set(theirs_series[uid]) - set(answer) - _NOT_COMPARED - _NOT_CATALOGUED
            assert not missing, f"series {uid} lacks {missing}"
            problems += _compare(answer, theirs_series[uid], f"series {uid}")
            assert _retrieve_path(answer) == _retrieve_path(theirs_series[uid])
        ours_instances = _by(ours_client.search_for_instances(study), "00080018")
        theirs_instances = _by(theirs_client.search_for_instances(study), "00080018")
        assert set(ours_instances) == set(theirs_instances), study
        for uid, answer in ours_instances.items():
            missing = set(theirs_instances[uid]) - set(answer) - _NOT_COMPARED - _NOT_CATALOGUED
            assert not missing, f"instance {uid} lacks {missing}"
            problems += _compare(answer, theirs_instances[uid], f"instance {uid}")
            assert _retrieve_path(answer) == _retrieve_path(theirs_instances[uid])
    assert not problems, "\n".join(problems)


#: where the two differ on purpose, the query is left out here and tested in test_qido:
#: the node matches PN case-insensitively, counts an empty value in a "*" (universal
#: matching) and not in an open range "-B" (Orthanc: the other way round), and matches
#: IS numerically ("01" is 1)
@pytest.mark.parametrize(("level", "filters"), [
    ("studies", {"PatientName": "*MR*"}),
    ("studies", {"PatientName": "CompressedSamples^CT1"}),
    ("studies", {"PatientName": "Compressed?amples^*"}),
    ("studies", {"PatientID": "1CT1"}),
    ("studies", {"StudyDate": "20040101-20041231"}),
    ("studies", {"StudyDate": "20000101-"}),
    ("studies", {"ModalitiesInStudy": "MR"}),
    ("studies", {"StudyInstanceUID": "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322,"
                                     "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"}),
    ("series", {"Modality": "CT"}),
    ("series", {"Modality": "US"}),
    ("series", {"SeriesNumber": "1"}),
    ("instances", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}),
])
def test_same_matches_for_the_same_query(peers, level: str,  # type: ignore[no-untyped-def]
                                         filters: dict[str, str]) -> None:
    ours_client, theirs_client = peers
    tag = {"studies": "0020000D", "series": "0020000E", "instances": "00080018"}[level]
    search = {"studies": "search_for_studies", "series": "search_for_series",
              "instances": "search_for_instances"}[level]
    ours = set(_by(getattr(ours_client, search)(search_filters=filters), tag))
    # Orthanc's plugin (1.7) does not percent-decode query values, and dicomweb-client
    # (requests) encodes * and ^: ask Orthanc with them written out (httpx leaves them)
    query = urlencode(filters, safe="*^?,")
    theirs = set(_by(httpx.get(f"{theirs_client.base_url}/{level}?{query}",
                               headers={"Accept": "application/dicom+json"}).json(), tag))
    assert ours == theirs
    assert ours  # the query means something here


def test_same_page_sizes(peers) -> None:  # type: ignore[no-untyped-def]
    ours_client, theirs_client = peers
    assert len(ours_client.search_for_studies(limit=5)) == 5
    assert len(theirs_client.search_for_studies(limit=5)) == 5
    total = len(ours_client.search_for_studies())
    assert len(ours_client.search_for_studies(offset=total - 2)) == 2
