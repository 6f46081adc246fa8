"""Politeness towards the PACS: the time window a backfill may work in, and its rate.

:class:`TimeWindow` is ``HH:MM-HH:MM`` in the node's local time; it may wrap midnight
(``22:00-06:00``: nights). :class:`RateLimit` spaces the starts of studies evenly
(``studies_per_hour``), shared by a backfill's workers. Both read time from an injected
clock, so tests can move it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from node.errors import InvalidBackfill

__all__ = ["Clock", "RateLimit", "TimeWindow", "local_now"]

#: the node's local wall-clock time (naive); injected so tests can move it
Clock = Callable[[], datetime]

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def local_now() -> datetime:
    return datetime.now()


def _minutes(text: str, what: str) -> int:
    match = _HHMM.match(text.strip())
    if match is None:
        raise InvalidBackfill(f"window {what} {text!r} is not a time: use HH:MM (00:00-23:59)")
    return int(match.group(1)) * 60 + int(match.group(2))


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The hours a backfill may start studies in, ``start`` included, ``end`` excluded
    (minutes after midnight, local time); ``start > end`` wraps midnight."""

    start: int
    end: int

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            if not 0 <= getattr(self, name) < 24 * 60:
                raise InvalidBackfill(f"window {name} must be within the day")
        if self.start == self.end:
            raise InvalidBackfill("window start and end are the same time: give a window "
                                  "of some length, e.g. 22:00-06:00, or none")

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        """``"22:00-06:00"`` → the window (a clear :class:`InvalidBackfill` otherwise)."""
        start, sep, end = text.partition("-")
        if not sep:
            raise InvalidBackfill(f"window {text!r} is not HH:MM-HH:MM (e.g. 22:00-06:00)")
        return cls(_minutes(start, "start"), _minutes(end, "end"))

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"

    @property
    def opening(self) -> str:
        """The start, as ``HH:MM``."""
        return _hhmm(self.start)

    def contains(self, when: datetime) -> bool:
        minute = when.hour * 60 + when.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def opens_in(self, when: datetime) -> float:
        """Seconds from ``when`` until the window opens (0 when it is open)."""
        if self.contains(when):
            return 0.0
        opening = when.replace(hour=self.start // 60, minute=self.start % 60, second=0,
                               microsecond=0)
        if opening <= when:
            opening += timedelta(days=1)
        return (opening - when).total_seconds()


class RateLimit:
    """Evenly spaced starts: at most ``per_hour`` a rolling hour, shared by threads.

    :meth:`reserve` books the next start and says how long to wait for it. ``last_start``
    (unix seconds) continues the spacing of an earlier run after a restart.
    """

    def __init__(self, per_hour: float | None, *, last_start: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        if per_hour is not None and per_hour <= 0:
            raise InvalidBackfill("rate must be a positive number of studies per hour")
        self.interval = 3600.0 / per_hour if per_hour else 0.0
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._next = monotonic()
        if last_start is not None and self.interval:
            self._next += max(0.0, last_start + self.interval - wall())

    def reserve(self) -> float:
        """Book the next start; return it (``monotonic`` seconds). The caller waits until
        then, or hands it back with :meth:`give_back`."""
        now = self._monotonic()
        if not self.interval:
            return now
        with self._lock:
            start = max(now, self._next)
            self._next = start + self.interval
            return start

    def give_back(self, start: float) -> None:
        """Return the booking ``start`` unused (nothing to start); only the latest booking
        can be returned, so the spacing of the others stays as booked."""
        with self._lock:
            if self.interval and self._next == start + self.interval:
                self._next = start
