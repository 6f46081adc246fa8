"""Parsing the extension's QIDO-shaped answers and the consensus header (no network)."""

from __future__ import annotations

import math

import pytest

from viewer_plugin.cases import (
    Consensus,
    Report,
    parse_consensus,
    parse_kos_result,
    parse_report,
    parse_similar_case,
    parse_similar_cases,
)


def _item(**extra: object) -> dict[str, object]:
    item: dict[str, object] = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3.4"]},
        "00080061": {"vr": "CS", "Value": ["CT", "SR"]},
        "00080020": {"vr": "DA", "Value": ["20240131"]},
        "00081030": {"vr": "LO", "Value": ["CT chest"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00100020": {"vr": "LO", "Value": ["P1"]},
        "00110010": {"vr": "LO", "Value": ["PRECEDENT"]},
        "00111001": {"vr": "FD", "Value": [0.875]},
        "00111002": {"vr": "IS", "Value": ["2"]},
        "00111003": {"vr": "UI", "Value": ["1.2.3.4.5.6"]},
        "00111004": {"vr": "UT", "Value": ["Small right pneumothorax."]},
        "00111005": {"vr": "UR", "Value": ["http://n/dicom-web/studies/1.2.3.4/report"]},
        "00111006": {"vr": "LO", "Value": ["pneumothorax", "emphysema"]},
    }
    item.update(extra)
    return item


def test_a_study_level_case_is_read_with_its_private_block() -> None:
    case = parse_similar_case(_item())
    assert case.study_instance_uid == "1.2.3.4"
    assert case.uid == "1.2.3.4"
    assert case.score == pytest.approx(0.875)
    assert case.rank == 2
    assert case.best_instance_uid == "1.2.3.4.5.6"
    assert case.modality == "CT/SR"
    assert case.study_date_display == "2024-01-31"
    assert case.description == "CT chest"
    assert case.patient_name == "Doe^Jane"
    assert case.patient_id == "P1"
    assert case.report_excerpt == "Small right pneumothorax."
    assert case.report_url.endswith("/studies/1.2.3.4/report")
    assert case.labels == ("pneumothorax", "emphysema")


def test_a_series_level_case_uses_series_attributes() -> None:
    case = parse_similar_case(_item(**{
        "0020000E": {"vr": "UI", "Value": ["1.2.3.4.5"]},
        "00080060": {"vr": "CS", "Value": ["MR"]},
        "0008103E": {"vr": "LO", "Value": ["T2 axial"]},
        "00180015": {"vr": "CS", "Value": ["HEAD"]},
    }))
    assert case.uid == "1.2.3.4.5"
    assert case.modality == "MR"
    assert case.description == "T2 axial"
    assert case.body_part == "HEAD"
    assert case.best_series_uid == "1.2.3.4.5"


def test_the_private_block_is_found_wherever_the_creator_reserved_it() -> None:
    item = {
        "0020000D": {"vr": "UI", "Value": ["1.2"]},
        "00110010": {"vr": "LO", "Value": ["SOMEONE ELSE"]},
        "00110011": {"vr": "LO", "Value": ["PRECEDENT"]},
        "00111001": {"vr": "FD", "Value": [0.1]},
        "00111101": {"vr": "FD", "Value": [0.5]},
        "00111102": {"vr": "IS", "Value": [1]},
    }
    case = parse_similar_case(item)
    assert case.score == 0.5 and case.rank == 1


def test_cases_come_back_in_rank_order_and_a_missing_score_is_nan() -> None:
    a = _item(**{"00111002": {"vr": "IS", "Value": [3]}})
    b = _item(**{"0020000D": {"vr": "UI", "Value": ["9.9"]},
                 "00111002": {"vr": "IS", "Value": [1]}})
    del b["00111001"]
    cases = parse_similar_cases([a, b])
    assert [c.study_instance_uid for c in cases] == ["9.9", "1.2.3.4"]
    assert math.isnan(cases[0].score)


def test_an_answer_without_a_study_uid_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match="StudyInstanceUID"):
        parse_similar_case({"00111001": {"vr": "FD", "Value": [1.0]}})
    with pytest.raises(TypeError, match="array"):
        parse_similar_cases({"not": "a list"})  # type: ignore[arg-type]


def test_consensus_header() -> None:
    consensus = parse_consensus('{"label": "pneumothorax", "count": 7, "of": 10}')
    assert consensus == Consensus("pneumothorax", 7, 10)
    assert consensus.line == "7 of 10 similar cases: pneumothorax"
    assert parse_consensus(None) is None
    assert parse_consensus("not json") is None
    assert parse_consensus('{"label": "", "count": 0, "of": 3}') is None


def test_a_ranking_score_is_read_when_the_node_gives_one() -> None:
    assert parse_similar_case(_item()).ranking_score is None
    case = parse_similar_case(_item(**{"00111008": {"vr": "FD", "Value": [0.0328]}}))
    assert case.ranking_score == pytest.approx(0.0328)
    with pytest.raises(ValueError, match="ranking score"):
        parse_similar_case(_item(**{"00111008": {"vr": "FD", "Value": ["high"]}}))


def test_reports_and_kos_answers_are_read() -> None:
    report = parse_report({"text": "Impression: normal.", "labels": ["Normal"],
                           "source": "sr"}, "1.2.3")
    assert report == Report("1.2.3", "Impression: normal.", ("Normal",), "sr")
    kos = parse_kos_result({"SOPInstanceUID": "2.25.1", "SeriesInstanceUID": "2.25.2",
                            "sent_to": None})
    assert (kos.sop_instance_uid, kos.series_instance_uid, kos.sent_to) == (
        "2.25.1", "2.25.2", None)
    with pytest.raises(TypeError, match="report"):
        parse_report([], "1.2.3")  # type: ignore[arg-type]
