"""What the study browser asks QIDO-RS, and how it reads the answer (no Qt, no network)."""

from __future__ import annotations

from datetime import date

import pytest

from viewer_plugin.study_search import StudyPage, StudySearch, name_pattern, parse_study_row


def test_names_match_anywhere_in_order_and_typed_wildcards_are_kept() -> None:
    assert name_pattern("doe") == "*doe*"
    assert name_pattern("Doe Jane") == "*Doe*Jane*"
    assert name_pattern("doe^ja") == "*doe*ja*"
    assert name_pattern("Do?^J*") == "Do?^J*"
    assert name_pattern("  ") == ""


def test_the_fields_become_qido_matching_parameters() -> None:
    search = StudySearch(patient_name="moreau", patient_id=" SC-0001 ", accession="CR25*",
                         modality="mr", date_from=date(2025, 1, 1), date_to=date(2025, 3, 31))
    assert search.filters() == {
        "PatientName": "*moreau*", "PatientID": "SC-0001", "AccessionNumber": "CR25*",
        "ModalitiesInStudy": "MR", "StudyDate": "20250101-20250331"}
    assert StudySearch().filters() == {}
    assert StudySearch(date_to=date(2025, 1, 1)).filters() == {"StudyDate": "-20250101"}
    assert StudySearch(date_from=date(2025, 1, 1), date_to=date(2025, 1, 1)).study_date \
        == "20250101"


def test_paging_moves_by_whole_pages_and_never_before_the_first() -> None:
    search = StudySearch(page_size=10)
    assert search.offset == 0
    assert search.next_page().next_page().offset == 20
    assert search.previous_page().page == 0
    assert search.next_page().first_page() == search


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"page_size": 0}, "page_size"), ({"page": -1}, "page"), ({"modality": "C T"}, "modality"),
    ({"date_from": date(2025, 2, 1), "date_to": date(2025, 1, 1)}, "date_from"),
])
def test_a_bad_search_names_the_field(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        StudySearch(**kwargs)  # type: ignore[arg-type]


def test_a_study_of_the_answer_reads_for_people() -> None:
    row = parse_study_row({
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Moreau^Claire"}]},
        "00100020": {"vr": "LO", "Value": ["SC-0001"]},
        "00080050": {"vr": "SH", "Value": ["CR2506140001"]},
        "00080020": {"vr": "DA", "Value": ["20250614"]},
        "00080061": {"vr": "CS", "Value": ["CR", "SR"]},
        "00081030": {"vr": "LO", "Value": ["XR chest PA"]},
        "00201206": {"vr": "IS", "Value": [2]},
        "00201208": {"vr": "IS", "Value": ["2"]},
    })
    assert (row.patient_display, row.date_display, row.modalities_display) == (
        "Moreau, Claire", "2025-06-14", "CR")
    assert (row.accession, row.description, row.series_count, row.instance_count) == (
        "CR2506140001", "XR chest PA", 2, 2)
    assert row.modalities == ("CR", "SR")
    with pytest.raises(ValueError, match="StudyInstanceUID"):
        parse_study_row({})


def test_a_page_says_where_it_is() -> None:
    rows = tuple(parse_study_row({"0020000D": {"vr": "UI", "Value": [f"1.{i}"]}})
                 for i in range(5))
    assert StudyPage(StudySearch(page_size=5), rows, True).range_text == \
        "Studies 1–5 (more on the next page)"
    assert StudyPage(StudySearch(page_size=5, page=2), rows[:2], False).range_text == \
        "Studies 11–12"
    assert StudyPage(StudySearch(), (), False).range_text == "No studies match."
