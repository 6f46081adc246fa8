"""QIDO-RS against a real node, every call through dicomweb-client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from dicomweb_client import DICOMwebClient

from tests._synthetic import to_bytes
from tests.node.test_query_retrieve import (
    S1,
    S1_CT,
    S1_MR,
    S2,
    S3,
    S3_US,
    S4,
    S4_CT,
    _catalogue,
)

STUDY_REQUIRED = ["00080020", "00080030", "00080050", "00080056", "00080061", "00080090",
                  "00081190", "00100010", "00100020", "00100030", "00100040", "0020000D",
                  "00200010", "00201206", "00201208"]
SERIES_REQUIRED = ["00080060", "0008103E", "00081190", "0020000E", "00200011", "00201209"]
INSTANCE_REQUIRED = ["00080016", "00080018", "00080056", "00081190", "00200013", "00280010",
                     "00280011", "00280008"]


@pytest.fixture(scope="module")
def web_node(tmp_path_factory: pytest.TempPathFactory,
             module_catalog_url: str | None) -> Iterator[object]:
    from tests.conftest import start_node

    node = start_node(tmp_path_factory.mktemp("qido-node"), None,
                      catalog_url=module_catalog_url)
    for ds in _catalogue():
        node.services.ingest.store(to_bytes(ds), source="TEST")
    yield node
    node.stop()


@pytest.fixture
def client(web_node) -> DICOMwebClient:  # type: ignore[no-untyped-def]
    return DICOMwebClient(web_node.dicomweb_url)


def _values(answers: list[dict], tag: str) -> set[str]:  # type: ignore[type-arg]
    return {a[tag]["Value"][0] for a in answers if "Value" in a.get(tag, {})}


def _problem(call) -> dict:  # type: ignore[no-untyped-def,type-arg]
    with pytest.raises(requests.HTTPError) as info:
        call()
    assert info.value.response.headers["content-type"].startswith("application/problem+json")
    return info.value.response.json()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- studies


def test_all_studies_with_required_attributes(client: DICOMwebClient) -> None:
    studies = client.search_for_studies()
    assert _values(studies, "0020000D") == {S1, S2, S3, S4}
    for study in studies:
        assert set(STUDY_REQUIRED) <= set(study), set(STUDY_REQUIRED) - set(study)
        uid = study["0020000D"]["Value"][0]
        assert study["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{uid}")
        assert study["00080056"]["Value"] == ["ONLINE"]
    s1 = next(s for s in studies if s["0020000D"]["Value"][0] == S1)
    assert s1["00100010"]["Value"] == [{"Alphabetic": "Doe^John"}]
    assert sorted(s1["00080061"]["Value"]) == ["CT", "MR"]
    assert s1["00201206"]["Value"] == [2] and s1["00201208"]["Value"] == [3]


@pytest.mark.parametrize(("filters", "expected"), [
    ({"PatientName": "doe^j*"}, {S1, S2, S4}),
    ({"PatientID": "P1"}, {S1, S4}),
    ({"StudyDate": "20240101-20241231"}, {S1, S2}),
    ({"StudyDate": "-20231231"}, {S3, S4}),
    ({"StudyInstanceUID": f"{S1},{S3}"}, {S1, S3}),          # QIDO's comma UID list
    ({"StudyInstanceUID": f"{S2}\\{S4}"}, {S2, S4}),         # and the DICOM backslash
    ({"ModalitiesInStudy": "MR"}, {S1}),
    ({"00100020": "P2"}, {S2}),                              # a tag instead of a keyword
    ({"AccessionNumber": "ACCP?"}, {S1, S2, S3, S4}),
    ({"PatientName": "Nobody"}, set()),
])
def test_study_matching(client: DICOMwebClient, filters: dict[str, str],
                        expected: set[str]) -> None:
    assert _values(client.search_for_studies(search_filters=filters), "0020000D") == expected


def test_limit_and_offset_page_through_all_studies(client: DICOMwebClient) -> None:
    pages = [client.search_for_studies(limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 0]
    seen = [s["0020000D"]["Value"][0] for page in pages for s in page]
    assert sorted(seen) == sorted({S1, S2, S3, S4})


def test_includefield(client: DICOMwebClient) -> None:
    (study,) = client.search_for_studies(search_filters={"StudyInstanceUID": S2},
                                         fields=["StudyDescription", "00201200"])
    assert study["00081030"]["Value"] == ["CT chest normal"]
    assert study["00201200"]["Value"] == [1]  # NumberOfPatientRelatedStudies
    (everything,) = client.search_for_studies(search_filters={"StudyInstanceUID": S1},
                                              fields=["all"])
    assert everything["00201200"]["Value"] == [2]
    assert everything["00080062"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]  # SOP classes
    # a valid keyword the catalog does not hold is ignored, as PS3.18 allows
    (plain,) = client.search_for_studies(search_filters={"StudyInstanceUID": S2},
                                         fields=["PatientWeight"])
    assert "00101030" not in plain


def test_fuzzymatching_is_accepted_with_a_warning(client: DICOMwebClient) -> None:
    studies = client.search_for_studies(search_filters={"PatientName": "Doe^Jane"},
                                        fuzzymatching=True)
    assert _values(studies, "0020000D") == {S2}
    response = client._http_get(f"{client.base_url}/studies",
                                params={"fuzzymatching": "true"})
    assert "fuzzymatching is not supported" in response.headers["Warning"]


def test_attribute_of_a_lower_level_is_ignored_with_a_warning(client: DICOMwebClient) -> None:
    response = client._http_get(f"{client.base_url}/studies", params={"Modality": "US"})
    assert len(response.json()) == 4
    assert "Modality is not supported for matching at this level" in response.headers["Warning"]


# --------------------------------------------------------------------------- series


def test_series_of_a_study(client: DICOMwebClient) -> None:
    series = client.search_for_series(S1)
    assert _values(series, "0020000E") == {S1_CT, S1_MR}
    for s in series:
        assert set(SERIES_REQUIRED) <= set(s), set(SERIES_REQUIRED) - set(s)
        uid = s["0020000E"]["Value"][0]
        assert s["00081190"]["Value"][0].endswith(f"/studies/{S1}/series/{uid}")
    counts = {s["0020000E"]["Value"][0]: s["00201209"]["Value"][0] for s in series}
    assert counts == {S1_CT: 2, S1_MR: 1}


def test_series_across_studies_carry_study_attributes(client: DICOMwebClient) -> None:
    series = client.search_for_series(search_filters={"Modality": "US"})
    assert _values(series, "0020000E") == {S3_US}
    assert series[0]["00100020"]["Value"] == ["P3"]          # PatientID
    assert series[0]["0020000D"]["Value"] == [S3]
    assert set(STUDY_REQUIRED) - {"00081190"} <= set(series[0])


def test_series_matching_with_a_study_key(client: DICOMwebClient) -> None:
    series = client.search_for_series(search_filters={"PatientID": "P1", "Modality": "CT"})
    assert _values(series, "0020000E") == {S1_CT, S4_CT}
    assert all(s["00080060"]["Value"] == ["CT"] for s in series)


# --------------------------------------------------------------------------- instances


def test_instances_of_a_series(client: DICOMwebClient) -> None:
    instances = client.search_for_instances(S1, S1_CT)
    assert _values(instances, "00080018") == {S1_CT + ".1", S1_CT + ".2"}
    for i in instances:
        assert set(INSTANCE_REQUIRED) <= set(i), set(INSTANCE_REQUIRED) - set(i)
        assert i["00280010"]["Value"] == [16] and i["00280011"]["Value"] == [16]
        sop = i["00080018"]["Value"][0]
        assert i["00081190"]["Value"][0].endswith(
            f"/studies/{S1}/series/{S1_CT}/instances/{sop}")


def test_instances_of_a_study_and_across_studies(client: DICOMwebClient) -> None:
    of_study = client.search_for_instances(S1)
    assert _values(of_study, "00080018") == {S1_CT + ".1", S1_CT + ".2", S1_MR + ".1"}
    assert _values(of_study, "00080060") == {"CT", "MR"}     # series attributes included
    everywhere = client.search_for_instances(search_filters={"InstanceNumber": "2"})
    assert _values(everywhere, "00080018") == {S1_CT + ".2", S3_US + ".2"}
    assert _values(everywhere, "00100020") == {"P1", "P3"}   # study attributes included


def test_unknown_study_gives_an_empty_answer(client: DICOMwebClient) -> None:
    assert client.search_for_series("1.2.3.4.5.6") == []


# --------------------------------------------------------------------------- errors


def test_unknown_parameter_is_a_400_naming_it(client: DICOMwebClient) -> None:
    problem = _problem(lambda: client.search_for_studies(search_filters={"PatientNam": "X"}))
    assert problem["status"] == 400
    assert problem["detail"] == (
        "query parameter 'PatientNam' is not known: use a DICOM keyword or tag "
        "(e.g. PatientID or 00100020), includefield, limit, offset or fuzzymatching")


def test_bad_date_is_a_400_naming_the_attribute(client: DICOMwebClient) -> None:
    problem = _problem(lambda: client.search_for_studies(
        search_filters={"StudyDate": "2024-01-01"}))
    assert problem["attribute"] == "StudyDate"
    assert problem["detail"] == ("StudyDate value '2024-01-01' is not a DA: use YYYYMMDD, or "
                                 "a range YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-")


@pytest.mark.parametrize(("key", "value", "detail"), [
    ("StudyDate", "20241301", "StudyDate value '20241301' is not a DA: 20241301 is not a day "
                              "(month 01-12, a day the month has)"),
    ("StudyDate", "20240230", "StudyDate value '20240230' is not a DA: 20240230 is not a day "
                              "(month 01-12, a day the month has)"),
    ("StudyDate", "20240101-20241399", "StudyDate value '20240101-20241399' is not a DA: "
                                       "20241399 is not a day (month 01-12, a day the month "
                                       "has)"),
    ("StudyTime", "2500", "StudyTime value '2500' is not a TM: 2500 is not a time of day "
                          "(hours 00-23, minutes 00-59, seconds 00-60)"),
    ("StudyTime", "1200-126000", "StudyTime value '1200-126000' is not a TM: 126000 is not "
                                 "a time of day (hours 00-23, minutes 00-59, seconds 00-60)"),
])
def test_a_date_or_time_that_does_not_exist_is_a_400(client: DICOMwebClient, key: str,
                                                     value: str, detail: str) -> None:
    problem = _problem(lambda: client.search_for_studies(search_filters={key: value}))
    assert (problem["status"], problem["attribute"], problem["detail"]) == (400, key, detail)


def test_real_dates_and_times_at_their_edges_match(client: DICOMwebClient) -> None:
    assert _values(client.search_for_studies(
        search_filters={"StudyDate": "20240229-20241231"}), "0020000D") == {S2}
    assert len(client.search_for_studies(search_filters={"StudyTime": "000000-235960"})) == 4


@pytest.mark.parametrize("value", ["\x00", "Doe\x00*", "Doe^J\x01*", "Doe\tJohn", "\x7f"])
def test_a_control_character_is_a_400_naming_the_attribute(client: DICOMwebClient,
                                                           value: str) -> None:
    """``PatientName=%00`` read as an empty value and matched every study."""
    response = requests.get(f"{client.base_url}/studies", params={"PatientName": value})
    assert response.status_code == 400, response.text[:200]
    problem = response.json()
    assert problem["attribute"] == "PatientName"
    assert problem["detail"] == ("query parameter 'PatientName' holds a control character "
                                 "(such as %00): send printable text, or leave the parameter "
                                 "out to match any value")


def test_the_engine_refuses_control_characters_left_after_padding() -> None:
    """C-FIND shares the engine: padding (spaces, a UID's trailing NUL) is stripped, a
    control character left after that is refused with the key named."""
    from node.errors import InvalidQuery
    from node.storage.query import Query

    Query(level="STUDY", filters={"StudyInstanceUID": "1.2.3\x00", "PatientName": "Doe* "})
    with pytest.raises(InvalidQuery) as info:
        Query(level="STUDY", filters={"PatientName": "Do\x00e*"})
    assert info.value.attribute == "PatientName"
    assert info.value.comment == "PatientName: control character in value"


def test_a_name_prefix_reads_the_name_index_not_every_study(tmp_path: Path) -> None:
    """``PatientName=Doe^J*`` (OHIF's and PACS' usual search) is a range of the name
    index; a pattern that starts with a wildcard has to scan. (SQLite's plan: the plan
    follows from the schema, so an empty catalog shows it.)"""
    from node.storage import connect
    from node.storage.query import Query

    conn = connect(tmp_path / "catalog.sqlite")

    def plan(pattern: str) -> str:
        sql, params = Query(level="STUDY", filters={"PatientName": pattern},
                            return_keys=["StudyInstanceUID"]).sql()
        return " ".join(str(tuple(r)[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}",
                                                               params))

    assert "USING INDEX studies_patient_name" in plan("Doe^J*")
    assert "USING INDEX studies_patient_name" in plan("doe^?ohn")
    assert "SCAN st" in plan("*John")


def test_a_datetime_key_is_not_matched_silently(client: DICOMwebClient) -> None:
    """The catalog holds no DT attribute: such a key is ignored, and the answer says so."""
    response = client._http_get(f"{client.base_url}/studies",
                                params={"AcquisitionDateTime": "20241301"})
    assert len(response.json()) == 4
    assert ("AcquisitionDateTime is not supported for matching at this level"
            in response.headers["Warning"])


def test_bad_uid_is_a_400(client: DICOMwebClient) -> None:
    problem = _problem(lambda: client.search_for_studies(
        search_filters={"StudyInstanceUID": "1.2.abc"}))
    assert problem["detail"].startswith("StudyInstanceUID value '1.2.abc' is not a UID")


def test_bad_integer_value_is_a_400(client: DICOMwebClient) -> None:
    problem = _problem(lambda: client.search_for_instances(
        search_filters={"InstanceNumber": "first"}))
    assert problem["detail"] == "InstanceNumber value 'first' is not an integer"


def test_bad_limit_is_a_400(client: DICOMwebClient) -> None:
    problem = _problem(lambda: client._http_get(f"{client.base_url}/studies",
                                                params={"limit": "-1"}))
    assert problem["detail"] == ("query parameter 'limit' must be an integer from 0 to "
                                 "100000, not '-1'")


def test_bad_includefield_is_a_400(client: DICOMwebClient) -> None:
    problem = _problem(lambda: client.search_for_studies(fields=["NoSuchThing"]))
    assert problem["detail"] == ("includefield 'NoSuchThing' is not a DICOM keyword or tag: "
                                 "use e.g. PatientAge or 00101010, or 'all'")


def test_repeated_parameter_is_a_400(client: DICOMwebClient) -> None:
    problem = _problem(lambda: client._http_get(f"{client.base_url}/studies?PatientID=P1"
                                                "&PatientID=P2"))
    assert problem["detail"].startswith("query parameter 'PatientID' is given more than once")


def test_xml_is_not_acceptable(client: DICOMwebClient) -> None:
    problem = _problem(lambda: client._http_get(f"{client.base_url}/studies",
                                                headers={"Accept": "application/dicom+xml"}))
    assert problem["status"] == 406
    assert problem["detail"] == ("QIDO-RS answers only application/dicom+json (or "
                                 "application/json); 'application/dicom+xml' was asked")


def test_public_url_sets_retrieve_url(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True, http={"public_url": "https://pacs.example.org/node"})
    node.services.ingest.store(to_bytes(_catalogue()[0]), source="TEST")
    (study,) = DICOMwebClient(node.dicomweb_url).search_for_studies()
    assert study["00081190"]["Value"] == [
        f"https://pacs.example.org/node/dicom-web/studies/{S1}"]


def test_non_ascii_names_come_back_in_utf8(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    ds = _catalogue()[0]
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jörg=山田^太郎"
    node.services.ingest.store(to_bytes(ds), source="TEST")
    (study,) = DICOMwebClient(node.dicomweb_url).search_for_studies(
        search_filters={"PatientName": "müller*"})
    assert study["00080005"]["Value"] == ["ISO_IR 192"]
    assert study["00100010"]["Value"] == [{"Alphabetic": "Müller^Jörg",
                                           "Ideographic": "山田^太郎"}]
