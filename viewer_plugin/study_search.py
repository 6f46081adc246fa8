"""Finding a study on the node the way people do: by patient name or ID, accession
number, date range and modality, a page at a time (QIDO-RS ``/studies`` with ``limit``
and ``offset``). No Qt and no network here: :class:`StudySearch` says what to ask,
:func:`parse_study_row` reads one answer, :class:`StudyPage` is one page of them.

    search = StudySearch(patient_name="doe", modality="CT", page_size=25)
    search.filters()     # {"PatientName": "*doe*", "ModalitiesInStudy": "CT"}
    search.next_page()   # the same search, offset 25
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from viewer_plugin.cases import DOCUMENT_MODALITIES

__all__ = [
    "STUDY_FIELDS",
    "StudyPage",
    "StudyRow",
    "StudySearch",
    "name_pattern",
    "parse_study_row",
]

#: attributes asked for beyond those QIDO-RS returns at study level anyway
STUDY_FIELDS = ("StudyDescription",)

_MODALITY = re.compile(r"[A-Z0-9]{1,16}")


def name_pattern(text: str) -> str:
    """A Patient Name match for what a user typed: ``doe jo`` → ``*doe*jo*``.

    Words match anywhere and in order (family name first, as DICOM stores it);
    the node matches names case-insensitively. Typed wildcards are kept as they are.
    """
    text = text.strip()
    if not text or any(c in text for c in "*?"):
        return text
    words = [w for w in re.split(r"[\s,^]+", text) if w]
    return "*" + "*".join(words) + "*"


@dataclass(frozen=True, slots=True, kw_only=True)
class StudySearch:
    """What the study browser asks for: filters and the page."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    modality: str = ""
    date_from: date | None = None
    date_to: date | None = None
    study_uid: str = ""
    page_size: int = 25
    page: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 200:
            raise ValueError(f"page_size: must be between 1 and 200, got {self.page_size}")
        if self.page < 0:
            raise ValueError(f"page: must be 0 or more, got {self.page}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from: {self.date_from} is after date_to {self.date_to}")
        modality = self.modality.strip().upper()
        if modality and not _MODALITY.fullmatch(modality):
            raise ValueError(f"modality: {self.modality!r} is not a DICOM modality (e.g. CT)")
        object.__setattr__(self, "modality", modality)

    @property
    def offset(self) -> int:
        return self.page * self.page_size

    @property
    def study_date(self) -> str:
        """The QIDO ``StudyDate`` range, ``""`` when open on both sides."""
        lo = self.date_from.strftime("%Y%m%d") if self.date_from else ""
        hi = self.date_to.strftime("%Y%m%d") if self.date_to else ""
        if not lo and not hi:
            return ""
        return lo if lo == hi else f"{lo}-{hi}"

    def filters(self) -> dict[str, str]:
        """The QIDO-RS matching parameters (keyword → value)."""
        found: dict[str, str] = {}
        if self.patient_name.strip():
            found["PatientName"] = name_pattern(self.patient_name)
        if self.patient_id.strip():
            found["PatientID"] = self.patient_id.strip()
        if self.accession.strip():
            found["AccessionNumber"] = self.accession.strip()
        if self.modality:
            found["ModalitiesInStudy"] = self.modality
        if self.study_date:
            found["StudyDate"] = self.study_date
        if self.study_uid.strip():
            found["StudyInstanceUID"] = self.study_uid.strip()
        return found

    def next_page(self) -> StudySearch:
        return replace(self, page=self.page + 1)

    def previous_page(self) -> StudySearch:
        return replace(self, page=max(0, self.page - 1))

    def first_page(self) -> StudySearch:
        return replace(self, page=0)


def _values(item: Mapping[str, Any], tag: str) -> list[Any]:
    element = item.get(tag)
    value = element.get("Value") if isinstance(element, Mapping) else None
    return list(value) if isinstance(value, list) else []


def _text(value: Any) -> str:
    if isinstance(value, Mapping):  # PN: {"Alphabetic": "..."}
        return str(value.get("Alphabetic") or value.get("Ideographic") or "")
    return "" if value is None else str(value)


def _first(item: Mapping[str, Any], tag: str) -> str:
    values = _values(item, tag)
    return _text(values[0]) if values else ""


def _count(item: Mapping[str, Any], tag: str) -> int:
    try:
        return int(float(_first(item, tag) or 0))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class StudyRow:
    """One study of a QIDO-RS answer, as the browser lists it."""

    study_instance_uid: str
    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    study_date: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    series_count: int = 0
    instance_count: int = 0

    @property
    def patient_display(self) -> str:
        """``Doe, Jane`` for ``Doe^Jane``."""
        parts = [p.strip() for p in self.patient_name.split("^")]
        family, given = [*parts, "", ""][:2]
        return f"{family}, {given}" if family and given else (family or given)

    @property
    def date_display(self) -> str:
        d = self.study_date
        return f"{d[:4]}-{d[4:6]}-{d[6:]}" if len(d) == 8 and d.isdigit() else d

    @property
    def modalities_display(self) -> str:
        """``"CR"`` for a study of CR images with its SR report (documents left out)."""
        images = [m for m in self.modalities if m not in DOCUMENT_MODALITIES]
        return ", ".join(images or self.modalities)


def parse_study_row(item: Mapping[str, Any]) -> StudyRow:
    """One element of a QIDO-RS ``/studies`` answer (DICOM JSON) → :class:`StudyRow`."""
    if not isinstance(item, Mapping):
        raise TypeError(f"a study must be a DICOM JSON object, got {type(item).__name__}")
    uid = _first(item, "0020000D")
    if not uid:
        raise ValueError("a study has no StudyInstanceUID (0020,000D)")
    return StudyRow(
        study_instance_uid=uid,
        patient_name=_first(item, "00100010"),
        patient_id=_first(item, "00100020"),
        accession=_first(item, "00080050"),
        study_date=_first(item, "00080020"),
        modalities=tuple(_text(v) for v in _values(item, "00080061") if _text(v)),
        description=_first(item, "00081030"),
        series_count=_count(item, "00201206"),
        instance_count=_count(item, "00201208"),
    )


@dataclass(frozen=True, slots=True)
class StudyPage:
    """One page of a search: its rows, and whether the node has more."""

    search: StudySearch
    rows: tuple[StudyRow, ...]
    has_more: bool

    @property
    def range_text(self) -> str:
        """``"Studies 26–50"``, ``"No studies match."``."""
        if not self.rows:
            return "No studies match." if self.search.page == 0 else "No more studies."
        first = self.search.offset + 1
        last = self.search.offset + len(self.rows)
        more = " (more on the next page)" if self.has_more else ""
        return f"Studies {first}–{last}{more}"
