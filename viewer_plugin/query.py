"""The parameters of a similar-case query, as the node's extension takes them
(``docs/api.md``, "Parameters"). No Qt and no network here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["LevelValues", "SimilarQuery"]


class LevelValues(str, Enum):
    """The levels a similar-case query answers at (the panel shows INSTANCE as "Image")."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


@dataclass(frozen=True, slots=True, kw_only=True)
class SimilarQuery:
    """The parameters every similar-case query shares."""

    level: LevelValues | str = LevelValues.STUDY
    limit: int = 10
    modality: str = ""
    body_part: str = ""
    study_date: str = ""  # "YYYYMMDD" or "YYYYMMDD-YYYYMMDD" (either side may be empty)
    exclude_patient: bool = True
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", LevelValues(self.level))
        if not 1 <= self.limit <= 100:
            raise ValueError(f"limit: must be between 1 and 100, got {self.limit}")
        object.__setattr__(self, "positive", tuple(self.positive))
        object.__setattr__(self, "negative", tuple(self.negative))

    def params(self) -> list[tuple[str, str]]:
        """The query string, as (name, value) pairs (``positive``/``negative`` repeat)."""
        p: list[tuple[str, str]] = [("limit", str(self.limit))]
        if self.modality:
            p.append(("Modality", self.modality))
        if self.body_part:
            p.append(("BodyPartExamined", self.body_part))
        if self.study_date.strip("-"):
            p.append(("StudyDate", self.study_date))
        p.append(("excludePatient", "true" if self.exclude_patient else "false"))
        p += [("positive", uid) for uid in self.positive]
        p += [("negative", uid) for uid in self.negative]
        return p

    def kos_body(self, destination: str | None) -> dict[str, object]:
        """The JSON body of ``POST …/similar/kos`` for this query."""
        body: dict[str, object] = {"limit": self.limit, "excludePatient": self.exclude_patient}
        if destination:
            body["destination"] = destination
        if self.modality:
            body["Modality"] = self.modality
        if self.body_part:
            body["BodyPartExamined"] = self.body_part
        if self.study_date.strip("-"):
            body["StudyDate"] = self.study_date
        if self.positive:
            body["positive"] = list(self.positive)
        if self.negative:
            body["negative"] = list(self.negative)
        return body
