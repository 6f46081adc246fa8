"""Retrieval quality on a labelled set: precision@k, recall@k and mAP@k.

The labels file is CSV with a header and the columns ``StudyInstanceUID`` and ``labels``;
``labels`` holds the study's labels separated by ``|`` (``pneumothorax|effusion``); a
study with an empty ``labels`` cell is known but unlabelled. Other columns are ignored.

Each labelled study that has a vector is a query (at study level). Its own patient is
excluded from the results (a patient's other studies would make it too easy). A result is
*relevant* when it shares at least one label with the query. For a query with ``R``
relevant studies in the index (other patients only) and ``k`` results:

- precision@k = relevant results / k
- recall@k    = relevant results / R
- AP@k        = Σ_i precision@i · rel_i / min(R, k);  mAP@k is its mean over queries.

Queries with ``R = 0`` (nothing to find) are counted but left out of the means.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

from indexer._levels import LevelValues
from indexer.index import IndexSet, vectors
from indexer.search import SearchFilters, search

__all__ = ["EvaluationResult", "evaluate", "read_labels"]


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """Mean metrics over the queries that had something to find."""

    k: int
    queries: int  # labelled studies with a vector, that had ≥1 relevant study
    skipped_no_relevant: int
    missing_vectors: int  # labelled studies not (yet) in the index
    precision_at_k: float
    recall_at_k: float
    mean_average_precision: float

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    def format_table(self) -> str:
        """The result as a rich table, rendered to plain text."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Retrieval quality (study level, k={self.k})")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row(f"precision@{self.k}", f"{self.precision_at_k:.3f}")
        table.add_row(f"recall@{self.k}", f"{self.recall_at_k:.3f}")
        table.add_row(f"mAP@{self.k}", f"{self.mean_average_precision:.3f}")
        table.add_row("queries", str(self.queries))
        table.add_row("skipped (nothing relevant)", str(self.skipped_no_relevant))
        table.add_row("labelled but not indexed", str(self.missing_vectors))
        buffer = io.StringIO()
        Console(file=buffer, width=80, force_terminal=False, color_system=None).print(table)
        return buffer.getvalue()


def read_labels(path: str | os.PathLike[str]) -> dict[str, frozenset[str]]:
    """StudyInstanceUID → labels, from the CSV described in the module docstring."""
    out: dict[str, frozenset[str]] = {}
    with Path(path).open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"StudyInstanceUID", "labels"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"labels file {path} lacks the column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            uid = (row["StudyInstanceUID"] or "").strip()
            if not uid:
                raise ValueError(f"labels file {path}, line {line}: empty StudyInstanceUID")
            labels = frozenset(x.strip().lower() for x in (row["labels"] or "").split("|"))
            out[uid] = labels - {""}
    return out


def evaluate(
    index_set: IndexSet, labels: str | os.PathLike[str] | dict[str, frozenset[str]], *, k: int = 10
) -> EvaluationResult:
    """Run every labelled study as a query and measure the results against the labels."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    table = labels if isinstance(labels, dict) else read_labels(labels)
    patient = vectors.patients(index_set.connection(), LevelValues.STUDY)
    precisions: list[float] = []
    recalls: list[float] = []
    aps: list[float] = []
    skipped = missing = 0
    for uid, mine in table.items():
        vector = index_set.get_vector(LevelValues.STUDY, uid)
        if vector is None or not mine:
            missing += vector is None
            continue
        pid = patient.get(uid)
        relevant_total = sum(
            1
            for other, theirs in table.items()
            if other in patient and patient[other] != pid and other != uid and mine & theirs
        )
        if relevant_total == 0:
            skipped += 1
            continue
        hits = search(
            index_set,
            vector,
            level=LevelValues.STUDY,
            k=k,
            filters=SearchFilters(exclude_patient_id=pid or "", exclude_uids=frozenset({uid})),
        )
        rel = [bool(mine & table.get(h.uid, frozenset())) for h in hits]
        found = sum(rel)
        precisions.append(found / k)
        recalls.append(found / relevant_total)
        running = 0
        ap = 0.0
        for i, r in enumerate(rel, start=1):
            if r:
                running += 1
                ap += running / i
        aps.append(ap / min(relevant_total, k))
    n = len(precisions)
    return EvaluationResult(
        k=k,
        queries=n,
        skipped_no_relevant=skipped,
        missing_vectors=missing,
        precision_at_k=sum(precisions) / n if n else 0.0,
        recall_at_k=sum(recalls) / n if n else 0.0,
        mean_average_precision=sum(aps) / n if n else 0.0,
    )
