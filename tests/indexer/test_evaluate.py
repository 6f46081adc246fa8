"""precision@k, recall@k and mAP with label-overlap relevance, own patient excluded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.evaluate import evaluate, read_labels
from indexer.index import IndexSet, InstanceVector

MODEL = "test@1"


def _study(ix: IndexSet, uid: str, patient: str, vec: list[float]) -> None:
    ix.add_instances(
        [InstanceVector(f"{uid}.1.1", f"{uid}.1", uid, np.asarray(vec, np.float32),
                        patient_id=patient)],
        identity=MODEL,
    )


@pytest.fixture
def index_set(tmp_path: Path) -> IndexSet:
    ix = IndexSet.open(catalog=tmp_path / "c.sqlite", index_dir=tmp_path / "index")
    # A and A2 are the same patient (A2 must not count for A); B is close to A, C is far
    _study(ix, "1.1", "PA", [1.0, 0.0, 0.0])
    _study(ix, "1.2", "PA", [1.0, 0.01, 0.0])
    _study(ix, "1.3", "PB", [0.9, 0.1, 0.0])
    _study(ix, "1.4", "PC", [0.0, 1.0, 0.0])
    _study(ix, "1.5", "PD", [0.0, 0.0, 1.0])
    return ix


def test_metrics_by_hand(index_set: IndexSet, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "StudyInstanceUID,labels,comment\n"
        "1.1,pneumothorax,query A\n"
        "1.2,pneumothorax,same patient as A\n"
        "1.3,pneumothorax|effusion,\n"
        "1.4,effusion,\n"
        "1.5,,unlabelled\n"
        "1.9,nodule,not indexed\n",
        encoding="utf-8",
    )
    labels = read_labels(csv)
    assert labels["1.3"] == {"pneumothorax", "effusion"} and labels["1.5"] == frozenset()
    r = evaluate(index_set, csv, k=2)
    # queries: 1.1 -> [1.3 (rel), 1.4 (not)]: P=.5 R=1/1 AP=1
    #          1.2 -> [1.3 (rel), 1.4]: P=.5 R=1 AP=1
    #          1.3 -> ranking of 1.1,1.2 (PA) and 1.4 (PC): all relevant (3); top2 both rel:
    #                 P=1 R=2/3 AP=1
    #          1.4 -> relevant: 1.3 only. ranking by cosine: 1.3 (0.11), then 1.1/1.2 (0/0.01)
    #                 P=.5 R=1 AP=1
    assert r.queries == 4 and r.missing_vectors == 1 and r.skipped_no_relevant == 0
    assert r.precision_at_k == pytest.approx((0.5 + 0.5 + 1 + 0.5) / 4)
    assert r.recall_at_k == pytest.approx((1 + 1 + 2 / 3 + 1) / 4)
    assert r.mean_average_precision == pytest.approx(1.0)
    table = r.format_table()
    assert "precision@2" in table and "0.625" in table and "mAP@2" in table


def test_average_precision_penalises_late_hits(index_set: IndexSet) -> None:
    labels = {"1.3": frozenset({"q"}), "1.4": frozenset({"q"}), "1.1": frozenset({"n"}),
              "1.2": frozenset({"n"})}
    r = evaluate(index_set, labels, k=3)
    # 1.3 -> [1.2, 1.1, 1.4]: its one relevant study comes third: AP = 1/3
    # 1.4 -> [1.3, …]: AP = 1; 1.1 and 1.2 only have each other, the same patient: skipped
    assert (r.queries, r.skipped_no_relevant) == (2, 2)
    assert r.mean_average_precision == pytest.approx((1 / 3 + 1) / 2)
    assert r.precision_at_k == pytest.approx(1 / 3)


def test_bad_labels_file_names_the_column(tmp_path: Path) -> None:
    csv = tmp_path / "l.csv"
    csv.write_text("uid,labels\n1.1,a\n", encoding="utf-8")
    with pytest.raises(ValueError, match="StudyInstanceUID"):
        read_labels(csv)


def test_k_is_validated(index_set: IndexSet) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        evaluate(index_set, {}, k=0)
