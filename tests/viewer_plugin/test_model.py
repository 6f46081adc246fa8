"""The panel's Qt-free model: query state, generations, feedback, display text."""

from __future__ import annotations

from datetime import date

import pytest
from pydicom import examples

from viewer_plugin.cases import Consensus, SimilarCase, SimilarResult
from viewer_plugin.client import LevelValues
from viewer_plugin.model import (
    DEFAULT_MIN_SUPPORT,
    FeedbackValues,
    PanelModel,
    QueryKindValues,
    QueryState,
    highlight_html,
)


def _result(*uids: str, consensus: Consensus | None = None) -> SimilarResult:
    return SimilarResult(tuple(SimilarCase(u, score=1 - i / 10, rank=i + 1, patient_name="Doe^J",
                                           patient_id="P9", report_excerpt="Right pneumothorax.")
                               for i, u in enumerate(uids)), consensus)


def test_defaults_protect_the_patient() -> None:
    state = QueryState()
    assert state.exclude_patient and state.hide_identity
    assert state.level is LevelValues.STUDY and state.limit == 10
    query = state.to_query()
    assert ("excludePatient", "true") in query.params()


def test_the_date_range_becomes_a_qido_range() -> None:
    assert QueryState(date_from=date(2020, 1, 2)).study_date == "20200102-"
    assert QueryState(date_to=date(2021, 3, 4)).study_date == "-20210304"
    assert QueryState(date_from=date(2020, 1, 2), date_to=date(2020, 1, 2)).study_date == "20200102"
    with pytest.raises(ValueError, match="date_from"):
        QueryState(date_from=date(2022, 1, 1), date_to=date(2021, 1, 1))
    with pytest.raises(ValueError, match="limit"):
        QueryState(limit=101)


def test_a_newer_query_makes_the_older_answer_stale() -> None:
    model = PanelModel()
    first = model.begin_query(study="1.2.3")
    second = model.begin_query(text="pneumothorax")
    assert second.kind is QueryKindValues.TEXT and first.kind is QueryKindValues.STORED
    assert not model.accept(first.generation, _result("9.9"))
    assert model.cases == () and model.busy
    assert model.accept(second.generation, _result("1.1", "1.2"))
    assert [c.uid for c in model.cases] == ["1.1", "1.2"] and not model.busy
    assert not model.fail(first.generation, "late error")
    assert model.error == ""


def test_local_datasets_make_an_upload_query() -> None:
    model = PanelModel()
    ct = examples.ct
    request = model.begin_query(study=[ct])
    assert request.kind is QueryKindValues.UPLOAD and request.datasets[0] is ct
    with pytest.raises(ValueError, match="study"):
        model.begin_query(study=None, text="  ")


def test_feedback_toggles_and_rerun_carries_it() -> None:
    model = PanelModel()
    model.begin_query(study="1.2.3")
    assert model.mark("1.1", FeedbackValues.POSITIVE) is FeedbackValues.POSITIVE
    assert model.mark("1.2", "negative") is FeedbackValues.NEGATIVE
    assert model.mark("1.2", FeedbackValues.POSITIVE) is FeedbackValues.POSITIVE  # switches
    assert model.feedback("1.2") is FeedbackValues.POSITIVE
    request = model.rerun()
    assert request is not None and request.study_uid == "1.2.3"
    assert request.query.positive == ("1.1", "1.2") and request.query.negative == ()
    assert model.mark("1.1", FeedbackValues.POSITIVE) is None  # toggled off
    model.clear_feedback()
    assert model.feedback("1.2") is None


def test_consensus_line_and_hidden_identity() -> None:
    model = PanelModel()
    request = model.begin_query(study="1.2.3")
    model.accept(request.generation, _result("1.1", consensus=Consensus("pneumothorax", 7, 10)))
    assert model.consensus_line == "7 of 10 similar cases: pneumothorax"
    case = model.cases[0]
    assert model.patient_display(case) == "(hidden)"
    model.state.hide_identity = False
    assert model.patient_display(case) == "Doe J · P9"
    model.accept(model.begin_query(study="1.2.3").generation, _result("1.1"))
    assert model.consensus_line == "No shared finding among these cases."


def test_text_queries_highlight_their_words_in_the_report() -> None:
    html = highlight_html("Small right Pneumothorax <2cm>.\nNo effusion.", "pneumothorax right")
    assert '<mark style="background-color:#ffe066">Pneumothorax</mark>' in html
    assert ">right</mark>" in html and "&lt;2cm&gt;" in html and "<br/>" in html
    model = PanelModel()
    request = model.begin_query(text="pneumothorax")
    model.accept(request.generation, _result("1.1"))
    assert "<mark" in model.report_html(model.cases[0])
    request = model.begin_query(study="1.2.3")
    model.accept(request.generation, _result("1.1"))
    assert "<mark" not in model.report_html(model.cases[0])


def test_one_case_of_ten_is_not_a_consensus() -> None:
    """A finding is headlined only with the stated support (default 30 %, and two cases)."""
    model = PanelModel()
    assert model.state.min_support == DEFAULT_MIN_SUPPORT == 0.3
    request = model.begin_query(study="1.2.3")
    model.accept(request.generation, _result("1.1", consensus=Consensus("normal", 1, 10)))
    assert model.consensus_line == "No finding is shared by at least 30% of these cases."
    assert "1 of 10" not in model.consensus_line
    model.accept(model.begin_query(study="1.2.3").generation,
                 _result("1.1", consensus=Consensus("pneumothorax", 3, 10)))
    assert model.consensus_line == "3 of 10 similar cases: pneumothorax"  # 30 %: shown
    model.accept(model.begin_query(study="1.2.3").generation,
                 _result("1.1", consensus=Consensus("nodule", 1, 2)))
    assert model.consensus_line.startswith("No finding")  # 50 %, but a single case
    model.state.min_support = 0.0
    assert model.consensus_line == "1 of 2 similar cases: nodule"  # 0: any shared label
    with pytest.raises(ValueError, match="min_support"):
        QueryState(min_support=1.5)


def test_feedback_is_said_in_one_line() -> None:
    model = PanelModel()
    assert model.feedback_line == ""
    model.mark("1.1", FeedbackValues.POSITIVE)
    assert model.feedback_line == "Refined: 1 more like"
    model.mark("1.2", FeedbackValues.NEGATIVE)
    model.mark("1.3", FeedbackValues.NEGATIVE)
    assert model.feedback_line == "Refined: 1 more like, 2 less like"
    model.clear_feedback()
    assert model.feedback_line == ""


def test_each_number_says_what_it_is_and_what_orders_the_list() -> None:
    model = PanelModel()
    model.accept(model.begin_query(study="1.2.3").generation, _result("1.1"))
    assert model.score_text(model.cases[0]) == "similarity 1.000"
    assert model.order_note == ""
    model.state.hybrid = True
    model.accept(model.begin_query(text="pneumothorax").generation, _result("1.1"))
    assert model.score_text(model.cases[0]) == "image–text cosine 1.000"
    assert "rank fusion" in model.order_note and "cosine" in model.order_note
    model.state.hybrid = False
    model.accept(model.begin_query(text="pneumothorax").generation, _result("1.1"))
    assert model.order_note.startswith("Ordered by image–text cosine")
    fused = SimilarResult((SimilarCase("1.4", score=-0.3, rank=1, ranking_score=0.0328),))
    model.state.hybrid = True
    model.accept(model.begin_query(text="pneumothorax").generation, fused)
    assert model.score_text(model.cases[0]) == "fused score 0.0328"
    assert model.order_note.startswith("Ordered by the fused score")


def test_a_case_is_summed_up_by_its_images_not_its_documents() -> None:
    model = PanelModel()
    case = SimilarCase("1.1", score=0.9, rank=1, modality="CR/SR/KO", study_date="20250614",
                       body_part="CHEST", description="XR chest PA")
    assert model.case_summary(case) == "CR · 2025-06-14 · CHEST · XR chest PA"
    assert model.case_summary(SimilarCase("1.2", score=0.9, rank=2, modality="SR")) == "SR"
