"""Typed views of the node's answers: similar cases, the consensus, reports, KOS.

The similar-case extension answers with a QIDO-RS-shaped DICOM JSON array; each
element carries a private block (creator ``PRECEDENT``, normally at ``(0011,0010)``,
so its elements are ``(0011,10xx)``) with the score, rank, best instance, report
excerpt, report URL, labels, the best instance's series and, optionally, the score a
fused answer is ordered by (see ``docs/internals.md``). These functions turn
that JSON, the ``Precedent-Consensus`` header, and the report and KOS answers, into
frozen dataclasses.
No Qt and no network here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DOCUMENT_MODALITIES",
    "PRIVATE_CREATOR",
    "Consensus",
    "KosResult",
    "Report",
    "SimilarCase",
    "SimilarResult",
    "parse_consensus",
    "parse_kos_result",
    "parse_report",
    "parse_similar_case",
    "parse_similar_cases",
]

PRIVATE_CREATOR = "PRECEDENT"
#: modalities of objects that are not images (reports, key objects, presentation
#: states): left out where a study's modalities are shown ("CR", not "CR/SR")
DOCUMENT_MODALITIES = frozenset({"SR", "KO", "PR", "DOC"})

# element offsets within the private block (docs/internals.md)
_SCORE = 0x01
_RANK = 0x02
_BEST_INSTANCE = 0x03
_REPORT_TEXT = 0x04
_REPORT_URL = 0x05
_LABELS = 0x06
_BEST_SERIES = 0x07  # "viewer needs" addition: the best instance's series UID
_RANKING_SCORE = 0x08  # optional: what a fused (hybrid) answer is ordered by

DicomJson = Mapping[str, Any]


def _values(item: DicomJson, tag: str) -> list[Any]:
    element = item.get(tag)
    if not isinstance(element, Mapping):
        return []
    value = element.get("Value")
    return list(value) if isinstance(value, list) else []


def _text(value: Any) -> str:
    if isinstance(value, Mapping):  # PN: {"Alphabetic": "..."}
        for key in ("Alphabetic", "Ideographic", "Phonetic"):
            if value.get(key):
                return str(value[key])
        return ""
    return "" if value is None else str(value)


def _first(item: DicomJson, tag: str) -> str:
    values = _values(item, tag)
    return _text(values[0]) if values else ""


def _private_group_base(item: DicomJson) -> str:
    """The tag prefix ``0011xx`` of the PRECEDENT block (``001110`` by default)."""
    for block in range(0x10, 0x100):
        if _first(item, f"0011{block:04X}").strip() == PRIVATE_CREATOR:
            return f"0011{block:02X}"
    return "001110"


@dataclass(frozen=True, slots=True)
class SimilarCase:
    """One retrieved case (a study, series or instance, by the query's level)."""

    study_instance_uid: str
    score: float
    rank: int
    series_instance_uid: str = ""
    sop_instance_uid: str = ""
    best_instance_uid: str = ""
    best_series_uid: str = ""
    modality: str = ""
    study_date: str = ""
    body_part: str = ""
    description: str = ""
    patient_name: str = ""
    patient_id: str = ""
    report_excerpt: str = ""
    report_url: str = ""
    labels: tuple[str, ...] = ()
    ranking_score: float | None = None  # a fused answer's ordering score, when the node gives it

    @property
    def uid(self) -> str:
        """The UID at the case's own level (what feedback refers to)."""
        return self.sop_instance_uid or self.series_instance_uid or self.study_instance_uid

    @property
    def study_date_display(self) -> str:
        """``YYYY-MM-DD`` when the date is a DICOM DA, else as given."""
        d = self.study_date
        if len(d) == 8 and d.isdigit():
            return f"{d[:4]}-{d[4:6]}-{d[6:]}"
        return d


@dataclass(frozen=True, slots=True)
class Consensus:
    """The majority vote over the results' labels (``Precedent-Consensus``)."""

    label: str
    count: int
    of: int

    @property
    def line(self) -> str:
        """``"7 of 10 similar cases: pneumothorax"``."""
        noun = "similar case" if self.of == 1 else "similar cases"
        return f"{self.count} of {self.of} {noun}: {self.label}"

    @property
    def support(self) -> float:
        """The share of the results that carry the label (0 to 1)."""
        return self.count / self.of if self.of > 0 else 0.0


@dataclass(frozen=True, slots=True)
class SimilarResult:
    """The node's answer to one similar-case query."""

    cases: tuple[SimilarCase, ...]
    consensus: Consensus | None = None
    level: str = "study"


@dataclass(frozen=True, slots=True)
class Report:
    """A study's report, as ``GET /studies/{study}/report`` returns it."""

    study_instance_uid: str
    text: str
    labels: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True)
class KosResult:
    """What ``POST /studies/{study}/similar/kos`` created (and where it was sent)."""

    sop_instance_uid: str
    series_instance_uid: str
    sent_to: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


def parse_similar_case(item: DicomJson) -> SimilarCase:
    """One element of the extension's DICOM JSON array → :class:`SimilarCase`."""
    if not isinstance(item, Mapping):
        raise TypeError(f"a similar case must be a DICOM JSON object, got {type(item).__name__}")
    study_uid = _first(item, "0020000D")
    if not study_uid:
        raise ValueError("a similar case has no StudyInstanceUID (0020,000D)")
    base = _private_group_base(item)

    def private(offset: int) -> str:
        return _first(item, f"{base}{offset:02X}")

    score_text = private(_SCORE)
    rank_text = private(_RANK)
    ranking_text = private(_RANKING_SCORE)
    try:
        score = float(score_text) if score_text else float("nan")
    except ValueError as exc:
        raise ValueError(f"the similarity score {score_text!r} is not a number") from exc
    try:
        ranking_score = float(ranking_text) if ranking_text else None
    except ValueError as exc:
        raise ValueError(f"the ranking score {ranking_text!r} is not a number") from exc
    try:
        rank = int(float(rank_text)) if rank_text else 0
    except ValueError as exc:
        raise ValueError(f"the rank {rank_text!r} is not a number") from exc

    modality = _first(item, "00080060") or "/".join(
        _text(v) for v in _values(item, "00080061") if v
    )
    description = _first(item, "0008103E") or _first(item, "00081030")
    return SimilarCase(
        study_instance_uid=study_uid,
        series_instance_uid=_first(item, "0020000E"),
        sop_instance_uid=_first(item, "00080018"),
        score=score,
        rank=rank,
        best_instance_uid=private(_BEST_INSTANCE) or _first(item, "00080018"),
        best_series_uid=private(_BEST_SERIES) or _first(item, "0020000E"),
        modality=modality,
        study_date=_first(item, "00080020") or _first(item, "00080021"),
        body_part=_first(item, "00180015"),
        description=description,
        patient_name=_first(item, "00100010"),
        patient_id=_first(item, "00100020"),
        report_excerpt=private(_REPORT_TEXT),
        report_url=private(_REPORT_URL),
        labels=tuple(_text(v) for v in _values(item, f"{base}{_LABELS:02X}") if _text(v)),
        ranking_score=ranking_score,
    )


def parse_similar_cases(items: Sequence[DicomJson]) -> tuple[SimilarCase, ...]:
    """The whole array, ordered by rank (then by score, best first)."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise TypeError("the similar-case answer must be a DICOM JSON array")
    cases = [parse_similar_case(item) for item in items]
    if all(c.rank > 0 for c in cases):
        cases.sort(key=lambda c: c.rank)
    return tuple(cases)


def parse_consensus(header: str | None) -> Consensus | None:
    """The ``Precedent-Consensus`` header (JSON) → :class:`Consensus`, or ``None``."""
    if not header:
        return None
    try:
        data = json.loads(header)
        label = str(data["label"])
        count = int(data["count"])
        of = int(data["of"])
    except (ValueError, KeyError, TypeError):
        return None
    if not label:
        return None
    return Consensus(label=label, count=count, of=of)


def parse_report(body: Mapping[str, Any], study_uid: str) -> Report:
    """The JSON of ``GET /studies/{study}/report`` → :class:`Report`."""
    if not isinstance(body, Mapping):
        raise TypeError(f"a report must be a JSON object, got {type(body).__name__}")
    return Report(
        study_instance_uid=str(body.get("StudyInstanceUID") or study_uid),
        text=str(body.get("text") or ""),
        labels=tuple(str(x) for x in body.get("labels") or ()),
        source=str(body.get("source") or ""),
    )


def parse_kos_result(body: Mapping[str, Any]) -> KosResult:
    """The JSON of ``POST /studies/{study}/similar/kos`` → :class:`KosResult`."""
    if not isinstance(body, Mapping):
        raise TypeError(f"a KOS answer must be a JSON object, got {type(body).__name__}")
    return KosResult(
        sop_instance_uid=str(body.get("SOPInstanceUID") or ""),
        series_instance_uid=str(body.get("SeriesInstanceUID") or ""),
        sent_to=body.get("sent_to") or None,
        raw=body,
    )
