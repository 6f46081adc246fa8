"""The panel's state, without Qt: the query, the results, the selection, feedback.

The panel (``viewer_plugin.panel``) renders this model and runs its requests on
a worker thread (what a request does on the node is :mod:`viewer_plugin.node_tasks`);
everything that decides *what* to ask and *what* to show lives here and is tested
without a display.

Queries are numbered: :meth:`PanelModel.begin_query` hands out a generation and
:meth:`PanelModel.accept` takes an answer only when it belongs to the newest
generation, so a slow older answer can never overwrite a newer one.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from enum import Enum

from pydicom import Dataset

from viewer_plugin.cases import DOCUMENT_MODALITIES, Consensus, SimilarCase, SimilarResult
from viewer_plugin.query import LevelValues, SimilarQuery
from viewer_plugin.report_text import highlight_html, query_words

__all__ = [
    "DEFAULT_MIN_SUPPORT",
    "MIN_AGREEING_CASES",
    "FeedbackValues",
    "PanelModel",
    "QueryKindValues",
    "QueryRequest",
    "QueryState",
    "highlight_html",
    "query_words",
]

HIDDEN_IDENTITY = "(hidden)"

#: the share of the results that must carry a label before the panel calls it the
#: consensus: 30 %, i.e. 3 of 10 (a panel setting; 0 shows any shared label)
DEFAULT_MIN_SUPPORT = 0.3
#: and never fewer results than this (one case is an anecdote, not a consensus)
MIN_AGREEING_CASES = 2


class FeedbackValues(str, Enum):
    """A radiologist's mark on a result."""

    POSITIVE = "positive"
    NEGATIVE = "negative"


class QueryKindValues(str, Enum):
    """What a query searches with."""

    STORED = "stored"  # a study (series, instance) the node has
    UPLOAD = "upload"  # an image of a local-only study, uploaded
    TEXT = "text"  # words, through the text tower (and BM25 when hybrid)


@dataclass(slots=True, kw_only=True)
class QueryState:
    """What the user has set in the panel's controls."""

    level: LevelValues = LevelValues.STUDY
    limit: int = 10
    modality: str = ""
    date_from: date | None = None
    date_to: date | None = None
    exclude_patient: bool = True
    text: str = ""
    hybrid: bool = True
    hide_identity: bool = True
    min_support: float = DEFAULT_MIN_SUPPORT
    positive: set[str] = field(default_factory=set)
    negative: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.level = LevelValues(self.level)
        if not 1 <= self.limit <= 100:
            raise ValueError(f"limit: must be between 1 and 100, got {self.limit}")
        if not 0.0 <= self.min_support <= 1.0:
            raise ValueError(f"min_support: must be between 0 and 1, got {self.min_support}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from: {self.date_from} is after date_to {self.date_to}")

    @property
    def study_date(self) -> str:
        """The QIDO ``StudyDate`` range, ``""`` when open on both sides."""
        if not self.date_from and not self.date_to:
            return ""
        lo = self.date_from.strftime("%Y%m%d") if self.date_from else ""
        hi = self.date_to.strftime("%Y%m%d") if self.date_to else ""
        return lo if lo == hi else f"{lo}-{hi}"

    def to_query(self) -> SimilarQuery:
        return SimilarQuery(
            level=self.level,
            limit=self.limit,
            modality=self.modality.strip().upper(),
            study_date=self.study_date,
            exclude_patient=self.exclude_patient,
            positive=tuple(sorted(self.positive)),
            negative=tuple(sorted(self.negative)),
        )


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """One query the panel's worker runs: what to search with and the parameters."""

    generation: int
    kind: QueryKindValues
    query: SimilarQuery
    study_uid: str = ""
    datasets: tuple[Dataset, ...] = ()
    text: str = ""
    hybrid: bool = True
    series_uid: str = ""
    sop_uid: str = ""


class PanelModel:
    """The state behind the Find-similar panel."""

    def __init__(self, state: QueryState | None = None) -> None:
        self.state = state or QueryState()
        self.generation = 0
        self.busy = False
        self.cases: tuple[SimilarCase, ...] = ()
        self.consensus: Consensus | None = None
        self.selected: int = -1
        self.error: str = ""
        self.last_request: QueryRequest | None = None
        self.answered_request: QueryRequest | None = None  # the query the cases answer
        self.reports: dict[str, str] = {}  # study UID → full report text

    # ----------------------------------------------------------- queries

    def begin_query(
        self,
        *,
        study: str | Sequence[Dataset] | None = None,
        text: str | None = None,
        series_uid: str = "",
        sop_uid: str = "",
    ) -> QueryRequest:
        """The next query (newer than every earlier one).

        ``text`` (or the state's text when ``study`` is ``None``) makes a text
        query; a study UID a stored query; data sets an upload query.
        """
        query_text = (self.state.text if text is None else text).strip()
        if study is None and not query_text:
            raise ValueError("study: there is no current study and no text to search with")
        self.generation += 1
        query = self.state.to_query()
        if study is None:
            request = QueryRequest(self.generation, QueryKindValues.TEXT, query,
                                   text=query_text, hybrid=self.state.hybrid)
        elif isinstance(study, str):
            request = QueryRequest(self.generation, QueryKindValues.STORED, query,
                                   study_uid=study, series_uid=series_uid, sop_uid=sop_uid)
        else:
            datasets = tuple(study)
            if not datasets:
                raise ValueError("study: the local study has no data sets")
            request = QueryRequest(self.generation, QueryKindValues.UPLOAD, query,
                                   datasets=datasets)
        self.last_request = request
        self.busy = True
        self.error = ""
        return request

    def rerun(self) -> QueryRequest | None:
        """The last query again, with the current state (e.g. after feedback)."""
        last = self.last_request
        if last is None:
            return None
        self.generation += 1
        request = replace(last, generation=self.generation, query=self.state.to_query())
        self.last_request = request
        self.busy = True
        self.error = ""
        return request

    def is_current(self, generation: int) -> bool:
        return generation == self.generation

    def accept(self, generation: int, result: SimilarResult) -> bool:
        """Take an answer; ``False`` (and nothing changes) when it is stale."""
        if not self.is_current(generation):
            return False
        self.busy = False
        self.error = ""
        self.cases = result.cases
        self.consensus = result.consensus
        self.answered_request = self.last_request
        self.selected = 0 if self.cases else -1
        return True

    def fail(self, generation: int, message: str) -> bool:
        """Record an error; ``False`` when it belongs to a superseded query."""
        if not self.is_current(generation):
            return False
        self.busy = False
        self.error = message
        return True

    def cancel(self) -> None:
        """Forget the running query (its answer will be stale)."""
        self.generation += 1
        self.busy = False

    # ----------------------------------------------------------- feedback

    def feedback(self, uid: str) -> FeedbackValues | None:
        if uid in self.state.positive:
            return FeedbackValues.POSITIVE
        if uid in self.state.negative:
            return FeedbackValues.NEGATIVE
        return None

    def mark(self, uid: str, value: FeedbackValues | str) -> FeedbackValues | None:
        """Toggle a mark on a result; returns the mark it now has."""
        value = FeedbackValues(value)
        mine, other = ((self.state.positive, self.state.negative)
                       if value is FeedbackValues.POSITIVE
                       else (self.state.negative, self.state.positive))
        other.discard(uid)
        if uid in mine:
            mine.discard(uid)
            return None
        mine.add(uid)
        return value

    def clear_feedback(self) -> None:
        self.state.positive.clear()
        self.state.negative.clear()

    # ----------------------------------------------------------- display

    def consensus_is_supported(self, consensus: Consensus) -> bool:
        """Whether enough of the results carry the label to call it their finding."""
        if self.state.min_support <= 0.0:
            return consensus.count >= 1
        return (consensus.count >= MIN_AGREEING_CASES
                and consensus.support + 1e-9 >= self.state.min_support)

    @property
    def consensus_line(self) -> str:
        """``"7 of 10 similar cases: pneumothorax"``, only with the support the setting asks."""
        if not self.cases:
            return ""
        if self.consensus is None:
            return "No shared finding among these cases."
        if not self.consensus_is_supported(self.consensus):
            share = round(self.state.min_support * 100)
            return f"No finding is shared by at least {share}% of these cases."
        return self.consensus.line

    @property
    def feedback_line(self) -> str:
        """``"Refined: 1 more like, 1 less like"`` while marks change the query, else ``""``."""
        more, less = len(self.state.positive), len(self.state.negative)
        if not more and not less:
            return ""
        parts = [f"{more} more like"] if more else []
        parts += [f"{less} less like"] if less else []
        return "Refined: " + ", ".join(parts)

    @property
    def answered_text_query(self) -> QueryRequest | None:
        """The text query the shown cases answer, ``None`` for an image query."""
        answered = self.answered_request
        return answered if answered is not None and answered.kind is QueryKindValues.TEXT else None

    def score_text(self, case: SimilarCase) -> str:
        """What the case's number is: ``similarity 0.934``, ``image–text cosine 0.212``…"""
        if case.ranking_score is not None:
            return f"fused score {case.ranking_score:.4f}"
        value = "–" if case.score != case.score else f"{case.score:.3f}"
        return (f"image–text cosine {value}" if self.answered_text_query is not None
                else f"similarity {value}")

    @property
    def order_note(self) -> str:
        """What the results are ordered by, when it is not the number shown on each."""
        text = self.answered_text_query
        if text is None:
            return ""
        if any(c.ranking_score is not None for c in self.cases):
            return ("Ordered by the fused score shown on each case "
                    "(image–text match and report words).")
        if text.hybrid:
            return ("Ordered by rank fusion of the image–text match and the report words; "
                    "the number on each case is its image–text cosine, not its rank score.")
        return "Ordered by image–text cosine (the model's text tower against the images)."

    @property
    def selected_case(self) -> SimilarCase | None:
        if 0 <= self.selected < len(self.cases):
            return self.cases[self.selected]
        return None

    def select(self, index: int) -> SimilarCase | None:
        self.selected = index if 0 <= index < len(self.cases) else -1
        return self.selected_case

    def patient_display(self, case: SimilarCase) -> str:
        """Patient name and ID, or a neutral word when identities are hidden."""
        if self.state.hide_identity:
            return HIDDEN_IDENTITY
        name = case.patient_name.replace("^", " ").strip()
        return " · ".join(p for p in (name, case.patient_id) if p) or "(no name)"

    def case_summary(self, case: SimilarCase) -> str:
        """One line: modality, date, body part, description.

        Modalities of documents (reports, key objects, presentation states) are left
        out: "CR", not "CR/SR".
        """
        shown = [m for m in case.modality.split("/") if m and m not in DOCUMENT_MODALITIES]
        modality = "/".join(shown) or case.modality
        parts = [modality, case.study_date_display, case.body_part, case.description]
        return " · ".join(p for p in parts if p) or "(no details)"

    def report_text(self, case: SimilarCase) -> str:
        return self.reports.get(case.study_instance_uid) or case.report_excerpt

    def report_html(self, case: SimilarCase) -> str:
        """The report of a case as HTML, the text query's words highlighted."""
        text = self.report_text(case)
        if not text:
            return "<i>No report for this case.</i>"
        answered = self.answered_text_query
        words = answered.text if answered is not None else ""
        labels = ""
        if case.labels:
            labels = "<p><b>Labels:</b> " + html.escape(", ".join(case.labels)) + "</p>"
        return labels + "<p>" + highlight_html(text, words) + "</p>"
