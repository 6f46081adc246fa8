"""What a backfill asks of a PACS, whatever the protocol: the studies of a date window,
the series of a study, the instances of a series, and to send some of them to the node.

:class:`PacsSession` is one association (DIMSE, :mod:`node.backfill.dimse`) or one HTTP
session (DICOMweb, :mod:`node.backfill.dicomweb`); a backfill's worker holds at most one,
so a backfill of concurrency N holds at most N associations to the PACS.

Failures, as the plan records them:

- :class:`PacsUnavailable`: the PACS cannot be reached or dropped the association; the
  whole backfill is held and retried with backoff, no attempt is counted;
- :class:`CappedAnswer`: the PACS answered a window only in part (its limit on answers);
  the window is split;
- :class:`PacsError`: the PACS refused a query (a failure status, an HTTP 4xx); the
  window or study is retried with backoff, attempts counted;
- a :class:`Retrieved` with failures: the study is partial and retried, only what is
  missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum
from typing import Protocol

__all__ = [
    "NON_IMAGE_MODALITIES",
    "CappedAnswer",
    "DateWindow",
    "Pacs",
    "PacsError",
    "PacsSession",
    "PacsUnavailable",
    "RemoteSeries",
    "RemoteStudy",
    "RetrieveLevelValues",
    "Retrieved",
]

#: modalities of series that hold no image to index (reports, key objects, presentation
#: states, documents, registrations, RT objects, waveforms); a backfill without
#: ``--modality`` pulls every series but these
NON_IMAGE_MODALITIES = frozenset({
    "SR", "KO", "PR", "DOC", "REG", "FID", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE",
    "PLAN", "ECG", "HD", "AU", "EPS", "RESP", "SEG", "RWV", "SMR", "OTHER",
})


class PacsUnavailable(Exception):
    """The PACS cannot be reached, refused the association, or dropped it."""


class PacsError(Exception):
    """The PACS refused a query or a retrieve; the message says what it answered."""


class CappedAnswer(Exception):
    """The PACS answered only part of a window (it caps its answers); ``matches`` is what
    it did answer."""

    def __init__(self, matches: list[RemoteStudy], status: str) -> None:
        super().__init__(f"the PACS capped its answer at {len(matches)} studies ({status})")
        self.matches = matches


@dataclass(frozen=True, slots=True)
class DateWindow:
    """Study dates ``date_from``…``date_to`` (``YYYYMMDD``, inclusive); one day may be cut
    further by Study Time ``time_from``…``time_to`` (``HHMMSS``, inclusive)."""

    date_from: str
    date_to: str
    time_from: str = ""
    time_to: str = ""

    @property
    def study_date(self) -> str:
        """The Study Date matching key (a range, or one date)."""
        return self.date_from if self.date_from == self.date_to else \
            f"{self.date_from}-{self.date_to}"

    @property
    def study_time(self) -> str:
        """The Study Time matching key (empty: any time)."""
        return f"{self.time_from}-{self.time_to}" if self.time_from else ""

    def split(self) -> list[DateWindow] | None:
        """Two halves: of the dates, else of the day's time; ``None`` below one minute."""
        first, last = _date(self.date_from), _date(self.date_to)
        if first < last:
            middle = first + timedelta(days=(last - first).days // 2)
            return [DateWindow(_text(first), _text(middle)),
                    DateWindow(_text(middle + timedelta(days=1)), _text(last))]
        start = _seconds(self.time_from or "000000")
        end = _seconds(self.time_to or "235959")
        if end - start < 120:
            return None
        noon = (start + end) // 2
        return [DateWindow(self.date_from, self.date_to, _hhmmss(start), _hhmmss(noon)),
                DateWindow(self.date_from, self.date_to, _hhmmss(noon + 1), _hhmmss(end))]

    def __str__(self) -> str:
        days = self.date_from if self.date_from == self.date_to else \
            f"{self.date_from}-{self.date_to}"
        return f"{days} {self.study_time}".strip()


def _date(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _text(day: date) -> str:
    return day.strftime("%Y%m%d")


def _seconds(hhmmss: str) -> int:
    return int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:6])


def _hhmmss(seconds: int) -> str:
    return f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}"


@dataclass(frozen=True, slots=True)
class RemoteStudy:
    """A study as the PACS answers it at STUDY level."""

    study_instance_uid: str
    study_date: str | None = None
    #: Number of Study Related Instances; ``None`` when the PACS does not say
    instances: int | None = None
    #: Modalities in Study; empty when the PACS does not say
    modalities: tuple[str, ...] = ()

    def has_any(self, modalities: Sequence[str]) -> bool:
        """Whether the study may hold a series of ``modalities`` (any, when none)."""
        return not modalities or not self.modalities or bool(set(modalities) &
                                                             set(self.modalities))


@dataclass(frozen=True, slots=True)
class RemoteSeries:
    """A series as the PACS answers it at SERIES level."""

    series_instance_uid: str
    modality: str | None = None
    #: Number of Series Related Instances; ``None`` when the PACS does not say
    instances: int | None = None


class RetrieveLevelValues(str, Enum):
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True, slots=True)
class Retrieved:
    """What one retrieve (C-MOVE, C-GET, WADO-RS) achieved."""

    completed: int = 0
    failed: int = 0
    #: why some failed, in words (the PACS's status, an ingest refusal)
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.reason is None


class PacsSession(Protocol):
    """One association or HTTP session with the PACS (see the module docstring)."""

    def find_studies(self, window: DateWindow, modalities: Sequence[str]) -> list[RemoteStudy]:
        """The studies of ``window``, as the PACS answers (``modalities`` may narrow the
        query; the caller checks each study's modalities); raises :class:`CappedAnswer`
        when the PACS said it answered only part of them."""
        ...

    def find_series(self, study_instance_uid: str) -> list[RemoteSeries] | None:
        """The study's series; ``None`` when the PACS does not answer at SERIES level."""
        ...

    def find_instances(self, study_instance_uid: str, series_instance_uid: str) -> list[str]:
        """The SOP Instance UIDs of a series."""
        ...

    def retrieve(self, level: RetrieveLevelValues, study_instance_uid: str,
                 series_instance_uid: str | None = None,
                 sop_instance_uids: Sequence[str] = ()) -> Retrieved:
        """Bring a study, a series or some instances of a series to the node."""
        ...

    def abort(self) -> None:
        """End the session at once (from another thread: the node is stopping)."""
        ...

    def close(self) -> None:
        ...


class Pacs(Protocol):
    """Opens sessions with one PACS; raises :class:`PacsUnavailable` when it cannot."""

    def open(self) -> PacsSession:
        ...
