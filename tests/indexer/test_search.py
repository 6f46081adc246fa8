"""Search with filters applied in the query, and relevance feedback."""

from __future__ import annotations

import numpy as np
import pytest

from database import dialect_of
from indexer import LevelValues
from indexer.index import IndexSet, InstanceVector
from indexer.search import SearchFilters, rocchio, search

DIM = 24
MODEL = "test@1"
MODALITIES = ("CT", "MR", "CR", "US")
PARTS = ("CHEST", "HEAD", "ABDOMEN")


@pytest.fixture(scope="module")
def index_set(tmp_path_factory: pytest.TempPathFactory, module_target: str) -> IndexSet:
    d = tmp_path_factory.mktemp("search")
    ix = IndexSet.open(catalog=module_target, index_dir=d / "index", model_id=MODEL, dim=DIM)
    rng = np.random.default_rng(7)
    items = []
    for s in range(600):  # 600 studies, one series of two instances each
        for i in range(2):
            items.append(
                InstanceVector(
                    sop_instance_uid=f"1.{s}.1.{i}",
                    series_instance_uid=f"1.{s}.1",
                    study_instance_uid=f"1.{s}",
                    vector=rng.normal(size=DIM).astype(np.float32),
                    patient_id=f"P{s % 50}",
                    modality=MODALITIES[s % 4],
                    body_part=PARTS[s % 3],
                    study_date=f"2024{1 + s % 12:02d}15",
                )
            )
    ix.add_instances(items, identity=MODEL)
    return ix


def _exact(ix: IndexSet, level: str, q: np.ndarray, where: str, k: int) -> list[str]:
    rows = ix.connection().execute(
        f"SELECT uid, vector FROM vectors WHERE level = ? AND {where}", (level,)
    ).fetchall()
    sims = [(float(np.frombuffer(v, "<f4") @ q), u) for u, v in rows]
    return [u for _, u in sorted(sims, reverse=True)[:k]]


def test_unfiltered_search_finds_the_query_itself(index_set: IndexSet) -> None:
    v = index_set.get_vector("study", "1.17")
    assert v is not None
    [first, *_] = search(index_set, v, level="study", k=5)
    assert first.uid == "1.17" and first.score == pytest.approx(1.0, abs=1e-2)
    assert first.best_instance_uid in {"1.17.1.0", "1.17.1.1"}


@pytest.mark.parametrize("level", ["study", "series"])
def test_each_hit_names_the_instance_closest_to_the_query(index_set: IndexSet,
                                                          level: str) -> None:
    q = index_set.get_vector("instance", "1.40.1.1")
    assert q is not None
    q = q / np.linalg.norm(q)
    hits = search(index_set, q, level=level, k=20)
    assert len(hits) == 20
    column = "study_instance_uid" if level == "study" else "parent_uid"
    for hit in hits:
        rows = index_set.connection().execute(
            f"SELECT uid, vector FROM vectors WHERE level = 'instance' AND {column} = ?",
            (hit.uid,)).fetchall()
        assert len(rows) == 2
        closest = max(rows, key=lambda r: float(np.frombuffer(r[1], "<f4") @ q))[0]
        assert hit.best_instance_uid == closest, hit
    assert hits[0].best_instance_uid == "1.40.1.1"


@pytest.mark.parametrize("exact_threshold", [100_000, 0])  # exact numpy, and widening HNSW
def test_filters_are_applied_in_the_query(index_set: IndexSet, exact_threshold: int) -> None:
    q = index_set.get_vector("instance", "1.5.1.0")
    assert q is not None
    flt = SearchFilters(
        modality="MR", body_part="chest", study_date_from="20240901", study_date_to="20241130",
        exclude_patient_id="P9",
    )
    hits = search(index_set, q, level="instance", k=10, filters=flt, exact_threshold=exact_threshold)
    assert len(hits) == 10
    keys = [k for (k,) in index_set.connection().execute("SELECT key FROM vectors")]
    rows = {r.uid: r for r in index_set.rows(keys).values()}
    for h in hits:
        row = rows[h.uid]
        assert row.modality == "MR" and row.body_part == "CHEST"
        assert "20240901" <= (row.study_date or "") <= "20241130" and row.patient_id != "P9"
    where = ("modality='MR' AND body_part='CHEST' AND study_date BETWEEN '20240901' AND '20241130'"
             " AND patient_id != 'P9'")
    expected = _exact(index_set, "instance", q, where, 10)
    assert len({h.uid for h in hits} & set(expected)) >= 9  # HNSW may swap a near tie
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_a_rare_filter_still_gets_k_results_from_the_widening_search(index_set: IndexSet) -> None:
    q = np.ones(DIM, np.float32)
    flt = SearchFilters(modality="US", study_date_from="20240415", study_date_to="20240415")
    allowed = _exact(index_set, "study", q / np.linalg.norm(q),
                     "modality='US' AND study_date='20240415'", 1000)
    hits = search(index_set, q, level="study", k=len(allowed) + 5, filters=flt, exact_threshold=0)
    assert sorted(h.uid for h in hits) == sorted(allowed)  # all of them, and nothing else


def test_study_level_modality_filter_matches_any_series(index_set: IndexSet) -> None:
    q = index_set.get_vector("study", "1.3")
    assert q is not None
    hits = search(index_set, q, level="study", k=5, filters=SearchFilters(modality="US"))
    assert hits and all(h.modality and "US" in h.modality.split("\\") for h in hits)


def test_excluded_uids_are_not_returned(index_set: IndexSet) -> None:
    q = index_set.get_vector("study", "1.9")
    assert q is not None
    hits = search(index_set, q, level="study", k=3, filters=SearchFilters(exclude_uids={"1.9"}))
    assert "1.9" not in {h.uid for h in hits} and len(hits) == 3


def test_bad_filters_name_the_argument() -> None:
    with pytest.raises(ValueError, match="study_date_from must be YYYYMMDD"):
        SearchFilters(study_date_from="2024-01-01")
    with pytest.raises(ValueError, match="is after study_date_to"):
        SearchFilters(study_date_from="20240102", study_date_to="20240101")


def test_bad_queries_are_refused(index_set: IndexSet) -> None:
    with pytest.raises(ValueError, match="non-zero"):
        search(index_set, np.zeros(DIM, np.float32), level=LevelValues.STUDY)
    with pytest.raises(ValueError, match="k must be at least 1"):
        search(index_set, np.ones(DIM, np.float32), k=0)


def test_rocchio_moves_towards_positives_and_away_from_negatives() -> None:
    q = np.array([1, 0, 0], np.float32)
    pos = np.array([[0, 1, 0]], np.float32)
    neg = np.array([[0, 0, 1]], np.float32)
    out = rocchio(q, pos, neg, alpha=1, beta=1, gamma=0.5)
    np.testing.assert_allclose(out, np.array([1, 1, -0.5]) / 1.5, atol=1e-6)
    assert rocchio(q) @ q == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cancelled"):
        rocchio(q, negatives=[q], gamma=1.0)


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_exclusions_only_match_the_exact_answer(index_set: IndexSet, level: str) -> None:
    """The own-patient exclusion (every stored-object query has it) takes the widening
    HNSW path checking each candidate's row; its answer is the exact filtered answer."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        q = rng.normal(size=DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        flt = SearchFilters(exclude_patient_id="P3", exclude_uids=frozenset({"1.3", "1.3.1"}))
        got = [h.uid for h in search(index_set, q, level=level, k=8, filters=flt)]
        assert not {"1.3", "1.3.1"} & set(got)
        expected = _exact(index_set, level, q,
                          "coalesce(patient_id, '') != 'P3' AND uid NOT IN ('1.3', '1.3.1')", 8)
        assert len(set(got) & set(expected)) >= 7  # HNSW recall on its own candidates


def test_matches_agrees_with_the_sql_filter(index_set: IndexSet) -> None:
    flt = SearchFilters(modality="MR", body_part="head", study_date_from="20240101",
                        study_date_to="20240630", exclude_patient_id="P9")
    where, params = flt.sql(dialect_of(index_set.connection()))
    allowed = {r[0] for r in index_set.connection().execute(
        f"SELECT key FROM vectors WHERE {where}", params)}
    every = [r[0] for r in index_set.connection().execute("SELECT key FROM vectors")]
    rows = index_set.rows(every)
    assert {key for key, row in rows.items() if flt.matches(row)} == allowed
    assert allowed  # the filter keeps something, so the comparison means something
