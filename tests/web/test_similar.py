"""The similar-case extension against a running node (tiny random-weight model).

The model's weights are random, so these tests check the contract (shape of the answer,
the private block, filters, exclusions, errors), not the quality of the ranking; the
hybrid text search is checked where BM25 decides it. What makes an answer trustworthy
has its own tests: the consensus only with its minimum support, what the order is based
on (``Precedent-Ranking``, the RRF score in ``00111008``), and the cosine floor
(``minScore``, ``[retrieval] text_min_score``; the fixtures turn the text floor off,
since random weights give meaningless image–text cosines).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests._synthetic import ct_instance, make_studies, to_bytes
from tests.conftest import RunningNode, start_node
from tests.web._helpers import (
    BEST,
    BEST_SERIES,
    CREATOR,
    DICOM_JSON,
    LABELS,
    PROBLEM_JSON,
    RANK,
    REPORT,
    REPORT_URL,
    SCORE,
    Catalogue,
    first_value,
    populate,
    store,
)

#: (0011,1008) FD: what a fused answer is ordered by (its RRF score)
RANKING_SCORE = "00111008"


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
        module_catalog_url: str | None) -> Iterator[Catalogue]:
    folder = tmp_path_factory.mktemp("similar")
    node = start_node(folder / "node", tiny_model_dir,
                      catalog_url=module_catalog_url)
    try:
        yield populate(node, folder)
    finally:
        node.stop()


def _get(cat: Catalogue, path: str, **params: object):  # type: ignore[no-untyped-def]
    with cat.node.http() as http:
        return http.get(f"/dicom-web{path}", params=params)


def _problem(response, status: int) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    return str(body["detail"])


# ------------------------------------------------------------------ stored queries


def test_similar_studies_answer_is_qido_shaped_with_private_block(cat: Catalogue) -> None:
    query = cat.studies[0]
    response = _get(cat, f"/studies/{query.study_instance_uid}/similar", limit=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(DICOM_JSON)
    items = response.json()
    assert 1 <= len(items) <= 5
    uids = [first_value(i, "0020000D") for i in items]
    assert query.study_instance_uid not in uids  # never the query itself
    assert cat.same_patient_study not in uids  # the query's own patient is left out
    scores = []
    for rank, item in enumerate(items, start=1):
        ds = Dataset.from_json(item)  # a plain DICOM JSON parser reads it
        assert ds.StudyInstanceUID in uids
        assert first_value(item, CREATOR) == "PRECEDENT"
        assert int(first_value(item, RANK)) == rank
        scores.append(float(first_value(item, SCORE)))
        assert -1.0001 <= scores[-1] <= 1.0001
        study = cat.by_uid(ds.StudyInstanceUID)
        assert study is not None
        best = first_value(item, BEST)
        assert best in {d.SOPInstanceUID for d in study.datasets}
        assert first_value(item, BEST_SERIES) == study.datasets[0].SeriesInstanceUID
        assert first_value(item, REPORT) == study.report
        assert first_value(item, REPORT_URL).endswith(
            f"/dicom-web/studies/{ds.StudyInstanceUID}/report")
        assert item[LABELS]["Value"] == [study.finding]
        assert item["00081190"]["Value"][0].endswith(f"/studies/{ds.StudyInstanceUID}")
        assert ds.ModalitiesInStudy == "CT"
        assert int(ds.NumberOfStudyRelatedInstances) == 2
        assert str(ds.PatientID) == study.patient_id
    assert scores == sorted(scores, reverse=True)


def test_consensus_header_is_the_majority_label(cat: Catalogue) -> None:
    query = cat.studies[1]
    # 6 of the 7 labelled others (4 findings, 2 each but the query's): some label is
    # carried by at least 2 of 6, whatever the order, so the default minimum is met
    response = _get(cat, f"/studies/{query.study_instance_uid}/similar", limit=6)
    items = response.json()
    labels = [item[LABELS]["Value"][0] for item in items]
    consensus = json.loads(response.headers["Precedent-Consensus"])
    assert consensus["of"] == len(items)
    assert consensus["count"] == max(labels.count(x) for x in set(labels))
    assert labels.count(consensus["label"]) == consensus["count"]
    assert consensus["support"] == round(consensus["count"] / consensus["of"], 4)
    assert consensus["min_support"] == {"cases": 2, "fraction": 0.3}


def _ten_others(node: RunningNode) -> tuple[str, list[str]]:
    """A query study and the ten other studies on ``node`` (distinct patients, no
    reports yet): a query with ``limit=10`` answers all ten, whatever their order."""
    studies = list(make_studies(11, instances_per_study=1, size=32, seed=5))
    for study in studies:
        store(node, study.datasets)
    node.wait_indexed()
    return studies[0].study_instance_uid, [s.study_instance_uid for s in studies[1:]]


def test_consensus_is_stated_only_with_the_minimum_support(make_node) -> None:  # type: ignore[no-untyped-def]
    from node.storage.study_reports import Report, attach_reports

    node: RunningNode = make_node()  # [retrieval]: 2 cases and 30 % of the results
    query, others = _ten_others(node)
    conn = node.services.connections.get()

    def ask(labelled: list[str], label: str) -> httpx.Response:
        attach_reports(conn, [Report(uid, f"Impression: {label}.", labels=(label,))
                              for uid in labelled])
        with node.http() as http:
            response = http.get(f"/dicom-web/studies/{query}/similar", params={"limit": 10})
        assert response.status_code == 200, response.text
        assert len(response.json()) == 10
        return response

    # one labelled case of ten is an anecdote, not a consensus
    assert "Precedent-Consensus" not in ask(others[:1], "normal").headers
    # two cases, but 20 % of the results
    assert "Precedent-Consensus" not in ask(others[:2], "normal").headers
    # three of ten: 30 %
    stated = json.loads(ask(others[:3], "normal").headers["Precedent-Consensus"])
    assert (stated["label"], stated["count"], stated["of"], stated["support"]) == (
        "normal", 3, 10, 0.3)
    # seven of ten: stated, with its support and the minimum it met
    response = ask(others[:7], "pneumothorax")
    assert json.loads(response.headers["Precedent-Consensus"]) == {
        "label": "pneumothorax", "count": 7, "of": 10, "support": 0.7,
        "min_support": {"cases": 2, "fraction": 0.3}}


def test_exclude_patient_false_lets_the_same_patient_in(cat: Catalogue) -> None:
    query = cat.studies[0]
    response = _get(cat, f"/studies/{query.study_instance_uid}/similar", limit=100,
                    excludePatient="false")
    uids = [first_value(i, "0020000D") for i in response.json()]
    assert cat.same_patient_study in uids
    assert query.study_instance_uid not in uids
    assert len(uids) == len(cat.studies)  # everything else on the node


def test_series_and_instance_levels(cat: Catalogue) -> None:
    study = cat.studies[2]
    series_uid = study.datasets[0].SeriesInstanceUID
    sop_uid = study.datasets[0].SOPInstanceUID
    response = _get(cat, f"/studies/{study.study_instance_uid}/series/{series_uid}/similar",
                    limit=3)
    assert response.status_code == 200, response.text
    items = response.json()
    assert items and all(first_value(i, "0020000E") for i in items)
    assert all(first_value(i, "0020000E") != series_uid for i in items)
    assert all(i["00081190"]["Value"][0].endswith("/series/" + first_value(i, "0020000E"))
               for i in items)
    assert all(first_value(i, "00080060") == "CT" for i in items)

    response = _get(cat, f"/studies/{study.study_instance_uid}/series/{series_uid}"
                         f"/instances/{sop_uid}/similar", limit=4)
    assert response.status_code == 200, response.text
    items = response.json()
    assert len(items) == 4
    for item in items:
        sop = first_value(item, "00080018")
        assert sop and sop != sop_uid and first_value(item, BEST) == sop
        assert first_value(item, "00080016") == "1.2.840.10008.5.1.4.1.1.2"
        assert item["00081190"]["Value"][0].endswith(f"/instances/{sop}")
    # excludePatient (default): the other instance of the same study is not a result
    assert study.datasets[1].SOPInstanceUID not in {first_value(i, "00080018") for i in items}


def test_filters(cat: Catalogue) -> None:
    uid = cat.studies[0].study_instance_uid
    response = _get(cat, f"/studies/{uid}/similar", Modality="MR")
    assert response.status_code == 200 and response.json() == []
    assert "Precedent-Consensus" not in response.headers
    assert _get(cat, f"/studies/{uid}/similar", Modality="CT").json()
    assert _get(cat, f"/studies/{uid}/similar", BodyPartExamined="HEAD").json() == []
    assert _get(cat, f"/studies/{uid}/similar", BodyPartExamined="chest").json()
    assert _get(cat, f"/studies/{uid}/similar", StudyDate="20230101-20231231").json() == []
    hits = _get(cat, f"/studies/{uid}/similar", StudyDate="20240101", limit=100).json()
    assert len(hits) == len(cat.studies) - 1
    hits = _get(cat, f"/studies/{uid}/similar", StudyDate="20240201-",
                excludePatient="false").json()
    assert [first_value(i, "0020000D") for i in hits] == [cat.same_patient_study]


def test_relevance_feedback(cat: Catalogue) -> None:
    uid = cat.studies[0].study_instance_uid
    baseline = [first_value(i, "0020000D")
                for i in _get(cat, f"/studies/{uid}/similar", limit=100).json()]
    negative, positive = baseline[0], baseline[-1]
    with cat.node.http() as http:
        response = http.get(f"/dicom-web/studies/{uid}/similar",
                            params=[("limit", "100"), ("positive", positive),
                                    ("negative", negative)])
    assert response.status_code == 200, response.text
    moved = [first_value(i, "0020000D") for i in response.json()]
    assert negative not in moved  # a study marked not relevant does not come back
    assert moved.index(positive) <= baseline.index(positive)


@pytest.mark.parametrize(("params", "words"), [
    ({"limit": 101}, "limit 101"),
    ({"limit": 0}, "limit 0"),
    ({"StudyDate": "2024"}, "StudyDate"),
    ({"StudyDate": "20250101-20240101"}, "starts after"),
    ({"StudyDate": "20241301"}, "StudyDate '20241301' is not a date"),  # month 13
    ({"excludePatient": "maybe"}, "excludePatient"),
    ({"positive": "1.2.3.999"}, "positive UID 1.2.3.999"),
    ({"negative": "x/y"}, "not a valid UID"),
    ({"minScore": 1.5}, "minScore 1.5 is out of range"),
    ({"minScore": -1.01}, "minScore -1.01 is out of range"),
    ({"minScore": "nan"}, "minScore nan is out of range"),
    ({"minScore": "high"}, "minScore"),
])
def test_bad_parameters_get_400_saying_what_to_change(cat: Catalogue, params: dict[str, object],
                                                      words: str) -> None:
    uid = cat.studies[0].study_instance_uid
    detail = _problem(_get(cat, f"/studies/{uid}/similar", **params), 400)
    assert words in detail


def test_unknown_objects_get_404(cat: Catalogue) -> None:
    study = cat.studies[0]
    detail = _problem(_get(cat, "/studies/1.2.3.4.5/similar"), 404)
    assert "study 1.2.3.4.5 is not on this node" in detail
    detail = _problem(_get(cat, f"/studies/{study.study_instance_uid}/series/1.2.3/similar"), 404)
    assert "series 1.2.3" in detail
    other_series = cat.studies[1].datasets[0].SeriesInstanceUID
    _problem(_get(cat, f"/studies/{study.study_instance_uid}/series/{other_series}/similar"), 404)
    detail = _problem(_get(cat, f"/studies/{study.study_instance_uid}/series/"
                                f"{study.datasets[0].SeriesInstanceUID}/instances/9.9/similar"),
                      404)
    assert "instance 9.9" in detail
    _problem(_get(cat, "/studies/not-a-uid/similar"), 400)


def test_object_without_a_vector_gets_409_with_the_reason(cat: Catalogue) -> None:
    from tests.web.test_reports import comprehensive_sr

    study_uid = generate_uid()
    sr = comprehensive_sr(study_uid=study_uid, patient_id="PSR1",
                          text="Nothing to see.", finding=None)
    store(cat.node, [sr])
    cat.node.wait_indexed()
    detail = _problem(_get(cat, f"/studies/{study_uid}/similar"), 409)
    assert study_uid in detail and "no picture" in detail
    assert "Test^" not in detail and "PSR1" not in detail  # no patient data


# ------------------------------------------------------------------ uploads


def _post(cat: Catalogue, body: bytes, content_type: str, **params: object):  # type: ignore[no-untyped-def]
    with cat.node.http() as http:
        return http.post("/dicom-web/similar", params=params, content=body,
                         headers={"Content-Type": content_type})


def test_post_dicom_upload(cat: Catalogue) -> None:
    study = cat.studies[3]
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(),
                     patient_id=study.patient_id, finding=study.finding, size=48, seed=77)
    response = _post(cat, to_bytes(ds), "application/dicom", level="study", limit=100)
    assert response.status_code == 200, response.text
    uids = [first_value(i, "0020000D") for i in response.json()]
    assert study.study_instance_uid not in uids  # the upload's patient is left out
    response = _post(cat, to_bytes(ds), "application/dicom", level="instance", limit=3,
                     excludePatient="false")
    assert response.status_code == 200
    assert len(response.json()) == 3 and all(first_value(i, "00080018")
                                             for i in response.json())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_post_picture_upload(cat: Catalogue, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)).save(
        buffer, fmt)
    response = _post(cat, buffer.getvalue(), f"image/{fmt.lower()}", level="series", limit=2)
    assert response.status_code == 200, response.text
    assert len(response.json()) == 2


def test_upload_errors(cat: Catalogue) -> None:
    detail = _problem(_post(cat, b"hello", "text/plain"), 415)
    assert "application/dicom" in detail and "image/png" in detail and "image/jpeg" in detail
    detail = _problem(_post(cat, b"\x89PNG not really", "image/png"), 400)
    assert "PNG image cannot be decoded" in detail
    detail = _problem(_post(cat, b"DICM" * 10, "application/dicom"), 400)
    assert "cannot be decoded" in detail
    _problem(_post(cat, b"", "image/png"), 400)
    from tests.web.test_reports import comprehensive_sr

    sr = comprehensive_sr(study_uid=generate_uid(), patient_id="PX", text="t", finding=None)
    detail = _problem(_post(cat, to_bytes(sr), "application/dicom"), 400)
    assert "no usable picture" in detail
    detail = _problem(_post(cat, b"x", "image/png", level="patient"), 400)
    assert "level 'patient'" in detail


# ------------------------------------------------------------------ text


def test_text_query_hybrid_puts_report_matches_first(cat: Catalogue) -> None:
    wanted = {s.study_instance_uid for s in cat.studies if s.finding == "pneumothorax"}
    response = _get(cat, "/similar", text="pneumothorax", hybrid="true", limit=5)
    assert response.status_code == 200, response.text
    uids = [first_value(i, "0020000D") for i in response.json()]
    assert set(uids[: len(wanted)]) == wanted
    consensus = json.loads(response.headers["Precedent-Consensus"])
    assert consensus["of"] == len(uids)


def test_text_query_dense_only_and_levels(cat: Catalogue) -> None:
    response = _get(cat, "/similar", text="pleural effusion", hybrid="false", limit=3)
    assert response.status_code == 200, response.text
    assert len(response.json()) == 3
    response = _get(cat, "/similar", text="nodule", hybrid="true", level="instance", limit=4)
    assert response.status_code == 200, response.text
    items = response.json()
    assert len(items) == 4 and all(first_value(i, "00080018") for i in items)
    nodule = {s.study_instance_uid for s in cat.studies if s.finding == "nodule"}
    assert first_value(items[0], "0020000D") in nodule


# ------------------------------------------------------------------ what the order is


def test_a_fused_answer_carries_the_rrf_score_it_is_ordered_by(cat: Catalogue) -> None:
    from viewer_plugin.cases import parse_similar_cases

    text = "pneumothorax effusion"
    response = _get(cat, "/similar", text=text, hybrid="true", limit=8)
    assert response.status_code == 200, response.text
    assert response.headers["Precedent-Ranking"] == "rrf"
    items = response.json()
    assert len(items) == 8
    assert [int(first_value(i, RANK)) for i in items] == list(range(1, 9))
    assert all(i[RANKING_SCORE]["vr"] == "FD" for i in items)
    fused = [float(first_value(i, RANKING_SCORE)) for i in items]
    assert fused == sorted(fused, reverse=True)  # non-increasing down the list
    assert all(0 < f <= 2 / 61 + 1e-12 for f in fused)  # Σ 1/(60 + rank) over 2 rankings
    # 00111001 stays the cosine: the one a dense-only answer gives the same case
    dense = _get(cat, "/similar", text=text, hybrid="false", limit=100)
    assert dense.headers["Precedent-Ranking"] == "cosine"
    cosine = {first_value(i, "0020000D"): float(first_value(i, SCORE)) for i in dense.json()}
    for item in items:
        assert float(first_value(item, SCORE)) == pytest.approx(
            cosine[first_value(item, "0020000D")], abs=2e-3)
    # and the viewer reads the number the order is based on
    assert [c.ranking_score for c in parse_similar_cases(items)] == fused


def test_plain_answers_are_ordered_by_the_cosine_and_say_so(cat: Catalogue) -> None:
    uid = cat.studies[0].study_instance_uid
    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)).save(
        buffer, "PNG")
    responses = [
        _get(cat, f"/studies/{uid}/similar", limit=5),
        _get(cat, "/similar", text="nodule", limit=5),
        _get(cat, "/similar", text="nodule", hybrid="false", level="instance", limit=5),
        _post(cat, buffer.getvalue(), "image/png", limit=5),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        assert response.headers["Precedent-Ranking"] == "cosine"
        items = response.json()
        assert len(items) == 5
        assert all(RANKING_SCORE not in item for item in items)
        scores = [float(first_value(i, SCORE)) for i in items]
        assert scores == sorted(scores, reverse=True)


def test_the_ranking_header_is_exposed_to_browser_viewers(make_node) -> None:  # type: ignore[no-untyped-def]
    origin = "https://viewer.example.org"
    node: RunningNode = make_node(http={"cors_origins": [origin]})
    node.wait_model()
    with node.http() as http:
        response = http.get("/dicom-web/similar", params={"text": "x"},
                            headers={"Origin": origin})
    assert response.status_code == 200, response.text
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "precedent-ranking" in exposed and "precedent-consensus" in exposed


# ------------------------------------------------------------------ the cosine floor


def _uids_and_scores(response: httpx.Response) -> tuple[list[str], list[float]]:
    assert response.status_code == 200, response.text
    items = response.json()
    return ([first_value(i, "0020000D") for i in items],
            [float(first_value(i, SCORE)) for i in items])


def test_min_score_leaves_out_the_results_below_it(cat: Catalogue) -> None:
    uid = cat.studies[0].study_instance_uid
    for path, params in ((f"/studies/{uid}/similar", {}),
                         ("/similar", {"text": "nodule", "hybrid": "false"})):
        everything, scores = _uids_and_scores(_get(cat, path, limit=100, **params))
        assert len(everything) >= 5 and scores[2] > scores[3]
        floor = round((scores[2] + scores[3]) / 2, 6)
        above, kept = _uids_and_scores(_get(cat, path, limit=100, minScore=floor, **params))
        assert above == everything[:3] and min(kept) >= floor  # fewer than limit
        # the floor is not a reason to fill the answer up from below it
        assert _uids_and_scores(_get(cat, path, limit=2, minScore=floor, **params))[0] == (
            everything[:2])
    # nothing reaches a cosine of 1: an empty answer, not an error
    response = _get(cat, f"/studies/{uid}/similar", minScore=1)
    assert response.status_code == 200 and response.json() == []
    assert "Precedent-Consensus" not in response.headers
    assert response.headers["Precedent-Ranking"] == "cosine"


def test_min_score_in_a_fused_answer_floors_the_text_towers_candidates_only(
        cat: Catalogue) -> None:
    wanted = {s.study_instance_uid for s in cat.studies if s.finding == "pneumothorax"}
    response = _get(cat, "/similar", text="pneumothorax", hybrid="true", limit=10,
                    minScore=1)
    uids, _ = _uids_and_scores(response)
    # no image reaches the floor; the report matches enter all the same
    assert set(uids) == wanted and len(uids) == len(wanted) < 10
    assert response.headers["Precedent-Ranking"] == "rrf"
    assert all(RANKING_SCORE in item for item in response.json())


def test_min_score_out_of_range_is_400_on_every_query_kind(cat: Catalogue) -> None:
    response = _get(cat, "/similar", text="nodule", minScore=2)
    assert "minScore 2.0 is out of range: use a cosine from -1 to 1" in _problem(response, 400)
    assert response.json()["attribute"] == "minScore"
    _problem(_get(cat, "/similar", text="nodule", hybrid="true", minScore=-3), 400)
    _problem(_post(cat, b"x", "image/png", minScore="inf"), 400)


def test_text_min_score_is_the_default_floor_of_text_queries(make_node) -> None:  # type: ignore[no-untyped-def]
    from node.storage.study_reports import Report, attach_reports

    node: RunningNode = make_node(retrieval={"text_min_score": 1.0})
    studies = list(make_studies(4, instances_per_study=1, size=32, seed=6))
    for study in studies:
        store(node, study.datasets)
    attach_reports(node.services.connections.get(),
                   [Report(s.study_instance_uid, s.report, (s.finding,)) for s in studies])
    node.wait_indexed()
    with node.http() as http:
        def uids(path: str, **params: object) -> list[str]:
            return _uids_and_scores(http.get(f"/dicom-web{path}", params=params))[0]

        assert uids("/similar", text="nodule") == []  # no cosine reaches 1.0
        assert len(uids("/similar", text="nodule", minScore=-1)) == 4  # minScore overrides
        pneumothorax = [s.study_instance_uid for s in studies if s.finding == "pneumothorax"]
        assert uids("/similar", text="pneumothorax", hybrid="true") == pneumothorax
        # the setting is for text queries; a stored query has no floor unless asked
        assert len(uids(f"/studies/{studies[0].study_instance_uid}/similar")) == 3


def test_text_query_errors(cat: Catalogue) -> None:
    assert "text is missing" in _problem(_get(cat, "/similar"), 400)
    _problem(_get(cat, "/similar", text="   "), 400)
    _problem(_get(cat, "/similar", text="x", hybrid="perhaps"), 400)
    _problem(_get(cat, "/similar", text="x" * 2001), 400)


def test_answers_parse_in_the_viewer_plugin(cat: Catalogue) -> None:
    from viewer_plugin.cases import parse_consensus, parse_similar_cases

    response = _get(cat, f"/studies/{cat.studies[0].study_instance_uid}/similar", limit=4)
    cases = parse_similar_cases(response.json())
    assert [c.rank for c in cases] == [1, 2, 3, 4]
    assert all(c.best_instance_uid and c.best_series_uid and c.labels for c in cases)
    assert parse_consensus(response.headers["Precedent-Consensus"]) is not None


# ------------------------------------------------------------------ no model


def test_model_not_loaded_gets_503_with_the_reason(make_node) -> None:  # type: ignore[no-untyped-def]
    node: RunningNode = make_node(no_model=True)
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="P1",
                     size=32)
    store(node, [ds])
    deadline_ok = node.services.model.status
    with node.http() as http:
        for _ in range(100):
            response = http.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/similar")
            if response.status_code == 503 and "loading" not in response.json()["detail"]:
                break
            import time

            time.sleep(0.1)
        detail = _problem(response, 503)
        assert response.json()["title"] == "Model not loaded"
        assert "nonexistent" in detail or "does not exist" in detail, deadline_ok
        _problem(http.get("/dicom-web/similar", params={"text": "x"}), 503)
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, "PNG")
        _problem(http.post("/dicom-web/similar", content=buffer.getvalue(),
                           headers={"Content-Type": "image/png"}), 503)


def test_results_agree_with_qido_and_are_retrievable(cat: Catalogue) -> None:
    """Each result is what a QIDO-RS search of its level answers (same attributes and
    values), and its best instance is retrievable by WADO-RS (dicomweb-client)."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=cat.node.dicomweb_url)
    items = _get(cat, f"/studies/{cat.studies[5].study_instance_uid}/similar", limit=3).json()
    assert len(items) == 3  # other patients' studies are indexed: the limit is reached
    for item in items:
        study_uid = first_value(item, "0020000D")
        (qido,) = client.search_for_studies(search_filters={"StudyInstanceUID": study_uid})
        for tag, element in qido.items():
            if tag == "00081190":  # the same path (the host part follows the request)
                path = element["Value"][0].split("/dicom-web", 1)[1]
                assert item[tag]["Value"][0].endswith(path)
            elif tag in item:
                assert item[tag] == element, tag
        missing = set(qido) - set(item)
        assert not missing, f"QIDO-RS answers {sorted(missing)} that the extension lacks"
        ds = client.retrieve_instance(study_uid, first_value(item, BEST_SERIES),
                                      first_value(item, BEST))
        assert ds.SOPInstanceUID == first_value(item, BEST)


# ------------------------------------------------------------------ the pure parts


def test_consensus_fusion_and_excerpt() -> None:
    from indexer import LevelValues
    from node.retrieval import Case, consensus, excerpt, reciprocal_rank_fusion
    from node.storage.study_reports import Report

    def case(rank: int, *labels: str) -> Case:
        report = Report("1.2", "t", labels) if labels else None
        return Case(rank=rank, score=1.0, level=LevelValues.STUDY, uid=str(rank),
                    study_instance_uid=str(rank), series_instance_uid=None,
                    sop_instance_uid=None, best_instance_uid=None, best_series_uid=None,
                    report=report)

    votes = consensus([case(1, "Nodule"), case(2, "effusion", "nodule"), case(3, "Effusion"),
                       case(4)])
    assert votes is not None and (votes.label, votes.count, votes.of) == ("Nodule", 2, 4)
    assert consensus([case(1), case(2)]) is None
    # each case counts a label once
    assert consensus([case(1, "a", "A"), case(2, "b")]).count == 1  # type: ignore[union-attr]

    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    assert [uid for uid, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)

    assert excerpt("short") == "short"
    long = "word " * 400
    cut = excerpt(long)
    assert len(cut) <= 1000 and cut.endswith("…") and not cut[:-1].endswith(" ")


def test_study_date_ranges() -> None:
    from node.errors import InvalidQuery
    from node.retrieval import SimilarQuery

    assert SimilarQuery(study_date="20240101").date_range == ("20240101", "20240101")
    assert SimilarQuery(study_date="20240101-").date_range == ("20240101", None)
    assert SimilarQuery(study_date="-20240101").date_range == (None, "20240101")
    assert SimilarQuery(study_date="20240101-20241231").date_range == ("20240101", "20241231")
    for bad in ("2024", "20240101-2024", "20241231-20240101", "20241301", "20230229-"):
        with pytest.raises(InvalidQuery, match="StudyDate"):
            SimilarQuery(study_date=bad)


def test_consensus_minimum_and_the_headers_it_decides() -> None:
    from indexer import LevelValues
    from node.retrieval import (
        Case,
        Consensus,
        ConsensusMinimum,
        RankingValues,
        SimilarAnswer,
        consensus,
    )
    from node.settings import RetrievalSettings
    from node.storage.study_reports import Report
    from node.web._similar_answer import answer_headers

    minimum = ConsensusMinimum(cases=2, fraction=0.3)
    assert minimum.met_by(Consensus("a", 3, 10))  # 30 % of 10 (0.3 · 10 > 3 in floats)
    assert not minimum.met_by(Consensus("a", 2, 10))
    assert not minimum.met_by(Consensus("a", 1, 2))  # half, but a single case
    assert minimum.met_by(Consensus("a", 2, 2))
    assert ConsensusMinimum(cases=1, fraction=0.0).met_by(Consensus("a", 1, 10))
    with pytest.raises(ValueError, match="cases"):
        ConsensusMinimum(cases=0, fraction=0.3)
    with pytest.raises(ValueError, match="fraction"):
        ConsensusMinimum(cases=2, fraction=1.5)
    defaults = RetrievalSettings()
    assert (defaults.consensus_min_cases, defaults.consensus_min_fraction) == (2, 0.3)

    cases = tuple(
        Case(rank=i, score=0.5, level=LevelValues.STUDY, uid=str(i), study_instance_uid=str(i),
             series_instance_uid=None, sop_instance_uid=None, best_instance_uid=None,
             best_series_uid=None, report=Report(str(i), "t", ("effusion",)) if i <= 7 else None)
        for i in range(1, 11))
    answer = SimilarAnswer(LevelValues.STUDY, cases, consensus(cases))
    headers = answer_headers(answer, defaults)
    assert headers["Precedent-Ranking"] == "cosine"
    assert json.loads(headers["Precedent-Consensus"])["support"] == 0.7
    strict = RetrievalSettings(consensus_min_fraction=0.8)
    assert "Precedent-Consensus" not in answer_headers(answer, strict)
    fused = SimilarAnswer(LevelValues.STUDY, cases, None, RankingValues.RRF)
    assert answer_headers(fused, defaults) == {"Precedent-Ranking": "rrf"}


def test_retrieval_settings_are_checked_at_start_up() -> None:
    from node.errors import SettingsError
    from node.settings import load_settings

    loaded = load_settings(None, {"retrieval": {"text_min_score": 0.25,
                                                "consensus_min_cases": 3}})
    assert (loaded.retrieval.text_min_score, loaded.retrieval.consensus_min_cases) == (0.25, 3)
    for key, value in (("text_min_score", 1.5), ("consensus_min_fraction", -0.1),
                       ("consensus_min_cases", 0)):
        with pytest.raises(SettingsError, match=f"retrieval.{key}"):
            load_settings(None, {"retrieval": {key: value}})


def test_min_score_is_checked_in_the_query() -> None:
    from node.errors import InvalidQuery
    from node.retrieval import SimilarQuery

    assert SimilarQuery(min_score=-1).min_score == -1.0
    for bad in (1.0001, -2.0, float("nan"), float("inf")):
        with pytest.raises(InvalidQuery, match="minScore"):
            SimilarQuery(min_score=bad)
