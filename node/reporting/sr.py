"""A DICOM Structured Report's text and labels, from its content tree (PS3.3 C.17.3).

The tree is walked depth first; each TEXT, CODE, NUM, DATE, TIME, DATETIME, PNAME and
UIDREF item becomes a line ``Concept name: value``, containers become headings, and
references and coordinates (IMAGE, COMPOSITE, WAVEFORM, SCOORD, SCOORD3D, TCOORD) are
left out. CODE items whose concept name is a finding or diagnosis
(:data:`FINDING_CONCEPTS`) also give a label: the code meaning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from enum import Enum
from typing import Any

from pydicom.dataset import Dataset

from node.errors import ReportError
from node.storage.study_reports import unique_labels

__all__ = ["FINDING_CONCEPTS", "ValueTypeValues", "extract_sr"]


class ValueTypeValues(str, Enum):
    """Value Type (0040,A040) of a content item (PS3.3 C.17.3.2.1)."""

    TEXT = "TEXT"
    CODE = "CODE"
    NUM = "NUM"
    DATE = "DATE"
    TIME = "TIME"
    DATETIME = "DATETIME"
    PNAME = "PNAME"
    UIDREF = "UIDREF"
    CONTAINER = "CONTAINER"
    IMAGE = "IMAGE"
    COMPOSITE = "COMPOSITE"
    WAVEFORM = "WAVEFORM"
    SCOORD = "SCOORD"
    SCOORD3D = "SCOORD3D"
    TCOORD = "TCOORD"


#: items that reference other objects or carry coordinates: no report text
_NO_TEXT = frozenset({ValueTypeValues.IMAGE, ValueTypeValues.COMPOSITE,
                      ValueTypeValues.WAVEFORM, ValueTypeValues.SCOORD,
                      ValueTypeValues.SCOORD3D, ValueTypeValues.TCOORD})

#: the attribute holding the value of the simple value types
_VALUE_ATTRIBUTE = {
    ValueTypeValues.DATE: "Date",
    ValueTypeValues.TIME: "Time",
    ValueTypeValues.DATETIME: "DateTime",
    ValueTypeValues.PNAME: "PersonName",
    ValueTypeValues.UIDREF: "UID",
}

#: concept names (scheme, code value) of CODE items whose value is a label
FINDING_CONCEPTS: frozenset[tuple[str, str]] = frozenset({
    ("DCM", "121071"),  # Finding
    ("SCT", "404684003"),  # Clinical finding
    ("SRT", "F-00000"),  # Clinical finding (legacy SNOMED-RT)
    ("DCM", "121073"),  # Impression (coded)
    ("SCT", "439401001"),  # Diagnosis
    ("SCT", "282291009"),  # Diagnostic interpretation
    ("DCM", "111023"),  # Differential diagnosis/Impression
})
_FINDING_MEANINGS = frozenset({"finding", "findings", "clinical finding", "diagnosis",
                               "impression", "differential diagnosis/impression"})


def _value_type(item: Dataset) -> ValueTypeValues | None:
    try:
        return ValueTypeValues(str(item.get("ValueType", "")).upper())
    except ValueError:
        return None


def _code_meaning(seq: Any) -> str:
    if not seq:
        return ""
    item = seq[0]
    return str(item.get("CodeMeaning", "") or item.get("CodeValue", "")).strip()


def _concept_key(item: Dataset) -> tuple[str, str] | None:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return None
    code = seq[0]
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue")
    return (str(code.get("CodingSchemeDesignator", "")), str(value or ""))


def _is_finding(item: Dataset) -> bool:
    key = _concept_key(item)
    if key is not None and key in FINDING_CONCEPTS:
        return True
    return _code_meaning(item.get("ConceptNameCodeSequence")).casefold() in _FINDING_MEANINGS


def _num_text(item: Dataset) -> str:
    seq = item.get("MeasuredValueSequence")
    if not seq:
        return ""
    measured = seq[0]
    value: object = measured.get("NumericValue", "")
    with contextlib.suppress(TypeError, ValueError):
        value = format(float(value), "g")  # type: ignore[arg-type]
    unit = _code_meaning(measured.get("MeasurementUnitsCodeSequence"))
    return f"{value} {unit}".strip() if unit and unit != "no units" else str(value)


def _item_value(item: Dataset, kind: ValueTypeValues | None) -> str:
    if kind is ValueTypeValues.TEXT:
        return str(item.get("TextValue", "")).strip()
    if kind is ValueTypeValues.CODE:
        return _code_meaning(item.get("ConceptCodeSequence"))
    if kind is ValueTypeValues.NUM:
        return _num_text(item)
    if kind in _VALUE_ATTRIBUTE:
        return str(item.get(_VALUE_ATTRIBUTE[kind], ""))
    return ""


def _walk(items: Iterable[Dataset], lines: list[str], labels: list[str], depth: int) -> None:
    for item in items:
        kind = _value_type(item)
        name = _code_meaning(item.get("ConceptNameCodeSequence"))
        if kind is ValueTypeValues.CONTAINER:
            if name:
                lines.append(name + ":" if depth else name)
        elif kind not in _NO_TEXT:
            value = _item_value(item, kind)
            if value:
                lines.append(f"{name}: {value}" if name else value)
                if kind is ValueTypeValues.CODE and _is_finding(item):
                    labels.append(value)
        children = item.get("ContentSequence")
        if children:
            _walk(children, lines, labels, depth + 1)


def extract_sr(ds: Dataset) -> tuple[str, tuple[str, ...]]:
    """The text and the labels (coded findings) of an SR document's content tree."""
    lines: list[str] = []
    labels: list[str] = []
    try:
        _walk([ds], lines, labels, 0)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"the SR content tree cannot be read: {exc}") from exc
    # the root container's title is the first line; keep it only with content under it
    text = "\n".join(lines).strip() if len(lines) > 1 else ""
    return text, unique_labels(labels)
