"""What an admin asks for: ``backfill start SOURCE --since … [--until …] [--modality …]
[--via …] [--window …] [--rate …] [--concurrency …]``, checked when it is built.

:class:`BackfillRequest` validates every field with a message naming the flag and what
to give instead; the REST route and the command line build the same object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum

from node.backfill.limits import TimeWindow
from node.errors import InvalidBackfill

__all__ = ["BackfillRequest", "ViaValues", "date_windows", "parse_date", "parse_modalities"]

_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")


class ViaValues(str, Enum):
    """How the backfill talks to the PACS."""

    DIMSE = "dimse"  #: C-FIND, then C-MOVE to the node (or C-GET)
    DICOMWEB = "dicomweb"  #: QIDO-RS, then WADO-RS


def parse_date(value: str | date, flag: str) -> date:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` (or a date) → the date."""
    if isinstance(value, date):
        return value
    match = _DATE.match(str(value).strip())
    try:
        if match is None:
            raise ValueError
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise InvalidBackfill(f"{flag} {value!r} is not a date: use YYYY-MM-DD "
                              "(e.g. 2020-01-31)") from None


def parse_modalities(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"CT,MR"`` or ``["CT", "MR"]`` → ``("CT", "MR")``; nothing: every image modality."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        modality = str(item).strip().upper()
        if not modality:
            continue
        if not _MODALITY.match(modality):
            raise InvalidBackfill(f"--modality {item!r} is not a DICOM modality (e.g. CT, "
                                  "MR, CR, DX)")
        if modality not in out:
            out.append(modality)
    return tuple(out)


def date_windows(since: date, until: date, days: int) -> list[tuple[date, date]]:
    """``since``…``until`` cut into windows of ``days`` days, newest first."""
    windows = []
    end = until
    while end >= since:
        start = max(since, end - timedelta(days=days - 1))
        windows.append((start, end))
        end = start - timedelta(days=1)
    return windows


@dataclass(frozen=True)
class BackfillRequest:
    """One backfill as asked for; every field is checked here."""

    source: str
    since: date
    until: date
    modalities: tuple[str, ...] = ()
    via: ViaValues = ViaValues.DIMSE
    window: TimeWindow | None = None
    #: studies per hour; ``None``: as fast as the associations allow
    rate: float | None = None
    concurrency: int = 2

    def __post_init__(self) -> None:
        if not self.source:
            raise InvalidBackfill("SOURCE must name a configured destination AE title")
        if self.since > self.until:
            raise InvalidBackfill(f"--since {self.since.isoformat()} is after --until "
                                  f"{self.until.isoformat()}")
        if self.rate is not None and not self.rate > 0:
            raise InvalidBackfill("--rate must be a positive number of studies per hour")
        if not 1 <= self.concurrency <= 32:
            raise InvalidBackfill("--concurrency must be between 1 and 32 associations")

    @classmethod
    def build(cls, *, source: str, since: str | date, until: str | date | None = None,
              modality: str | list[str] | None = None, via: str | ViaValues = ViaValues.DIMSE,
              window: str | None = None, rate: float | None = None,
              concurrency: int = 2, today: date | None = None) -> BackfillRequest:
        """From the flags' (or the JSON body's) values; ``until`` defaults to ``today``."""
        try:
            via_value = ViaValues(str(getattr(via, "value", via)).lower())
        except ValueError:
            raise InvalidBackfill(f"--via {via!r} is not a way to reach the PACS: use dimse "
                                  "or dicomweb") from None
        return cls(
            source=source.strip(),
            since=parse_date(since, "--since"),
            until=parse_date(until, "--until") if until else (today or datetime.now().date()),
            modalities=parse_modalities(modality),
            via=via_value,
            window=TimeWindow.parse(window) if window else None,
            rate=float(rate) if rate is not None else None,
            concurrency=int(concurrency),
        )
