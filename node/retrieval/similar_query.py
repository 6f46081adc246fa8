"""What every similar-case query shares, validated in the constructor and named as on
the wire: level, limit, filters (Modality, BodyPartExamined, StudyDate), whether to
leave out the query's own patient, relevance feedback (positive/negative UIDs), and the
lowest cosine a result may have (minScore)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from indexer import LevelValues
from node.errors import InvalidQuery
from node.storage.query import is_valid_da

if TYPE_CHECKING:
    from indexer.search import SearchFilters

__all__ = ["MAX_LIMIT", "SimilarQuery"]

MAX_LIMIT = 100


class _Scored(Protocol):
    @property
    def score(self) -> float: ...


_S = TypeVar("_S", bound=_Scored)


def _parse_date_range(value: str | None) -> tuple[str | None, str | None]:
    if value is None or not value.strip():
        return None, None
    text = value.strip()
    first, dash, second = text.partition("-")
    low: str | None = first.strip() or None
    high: str | None = (second.strip() or None) if dash else low
    for part in (low, high):
        if part is not None and not is_valid_da(part):  # a real day: no month 13
            raise InvalidQuery(
                f"StudyDate {value!r} is not a date or a range: use YYYYMMDD, "
                "YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-"
            )
    if low and high and low > high:
        raise InvalidQuery(f"StudyDate {value!r}: the range starts after it ends")
    return low, high


@dataclass(frozen=True, kw_only=True)
class SimilarQuery:
    """What every similar-case query shares (validated here, named as on the wire)."""

    level: LevelValues = LevelValues.STUDY
    limit: int = 10
    modality: str | None = None
    body_part: str | None = None
    #: ``YYYYMMDD`` or a range ``YYYYMMDD-YYYYMMDD`` (either side may be left open)
    study_date: str | None = None
    #: leave out the query's own patient; ``None`` means yes when the patient is known
    exclude_patient: bool | None = None
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    #: the lowest cosine a result may have (``minScore``, -1 to 1); ``None``: no floor
    min_score: float | None = None
    date_range: tuple[str | None, str | None] = field(init=False, default=(None, None))

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "level", LevelValues(self.level))
        except ValueError as exc:
            allowed = ", ".join(v.value for v in LevelValues)
            raise InvalidQuery(f"level {self.level!r} is not a level: use {allowed}") from exc
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit {self.limit} is out of range: use 1 to {MAX_LIMIT}")
        object.__setattr__(self, "modality", (self.modality or "").strip().upper() or None)
        object.__setattr__(self, "body_part", (self.body_part or "").strip().upper() or None)
        object.__setattr__(self, "date_range", _parse_date_range(self.study_date))
        object.__setattr__(self, "positive", tuple(dict.fromkeys(self.positive)))
        object.__setattr__(self, "negative", tuple(dict.fromkeys(self.negative)))
        if self.min_score is not None:
            floor = float(self.min_score)
            if not (math.isfinite(floor) and -1.0 <= floor <= 1.0):
                raise InvalidQuery(f"minScore {self.min_score} is out of range: use a cosine "
                                   "from -1 to 1", attribute="minScore")
            object.__setattr__(self, "min_score", floor)

    def above_floor(self, hits: Sequence[_S]) -> list[_S]:
        """The ``hits`` whose score (cosine) reaches ``min_score``, in their order; all of
        them without a floor."""
        if self.min_score is None or self.min_score <= -1.0:
            return list(hits)
        floor = self.min_score
        return [hit for hit in hits if hit.score >= floor]

    def filters(self, *, exclude_patient_id: str | None,
                exclude_uids: Iterable[str] = ()) -> SearchFilters:
        """The indexer's search filters for this query."""
        from indexer.search import SearchFilters

        return SearchFilters(
            modality=self.modality,
            body_part=self.body_part,
            study_date_from=self.date_range[0],
            study_date_to=self.date_range[1],
            exclude_patient_id=exclude_patient_id,
            exclude_uids=frozenset(exclude_uids),
        )
