"""The consensus of an answer: the label most of its cases carry (a majority vote), and
the minimum support it needs before the node states it as a consensus."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Consensus", "ConsensusMinimum", "Labelled", "consensus"]

#: slack for the share comparison (3 of 10 reaches 0.3 although 0.3 · 10 > 3 in floats)
_EPSILON = 1e-9


class Labelled(Protocol):
    """A case as the vote sees it: its labels."""

    @property
    def labels(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class ConsensusMinimum:
    """The least support a majority label needs to be stated: at least ``cases`` results
    carry it, and they are at least ``fraction`` of the results."""

    cases: int
    fraction: float

    def __post_init__(self) -> None:
        if self.cases < 1:
            raise ValueError(f"cases: must be at least 1, got {self.cases}")
        if not (math.isfinite(self.fraction) and 0.0 <= self.fraction <= 1.0):
            raise ValueError(f"fraction: must be between 0 and 1, got {self.fraction}")

    def met_by(self, vote: Consensus) -> bool:
        """Whether ``vote`` has the support this minimum asks for."""
        return (vote.count >= self.cases
                and vote.count + _EPSILON >= self.fraction * vote.of)

    def as_json(self) -> dict[str, Any]:
        return {"cases": self.cases, "fraction": self.fraction}


@dataclass(frozen=True, slots=True)
class Consensus:
    """The majority vote over the results' labels."""

    label: str
    count: int
    of: int

    @property
    def support(self) -> float:
        """The share of the results that carry the label (0 to 1)."""
        return self.count / self.of if self.of > 0 else 0.0

    def as_json(self, minimum: ConsensusMinimum) -> dict[str, Any]:
        """``{"label", "count", "of", "support", "min_support": {"cases", "fraction"}}``."""
        return {"label": self.label, "count": self.count, "of": self.of,
                "support": round(self.support, 4), "min_support": minimum.as_json()}


def consensus(cases: Sequence[Labelled]) -> Consensus | None:
    """The label most cases carry (each case counts a label once, case-insensitively);
    a tie goes to the label of the better-ranked case (``cases`` are best first).
    ``None`` when no case has labels. Whether it is supported enough to be stated is
    :meth:`ConsensusMinimum.met_by`'s decision."""
    counts: Counter[str] = Counter()
    first_seen: dict[str, tuple[int, str]] = {}
    for position, case in enumerate(cases):
        for key, shown in {lab.casefold(): lab for lab in case.labels if lab.strip()}.items():
            counts[key] += 1
            first_seen.setdefault(key, (position, shown))
    if not counts:
        return None
    key = min(counts, key=lambda k: (-counts[k], first_seen[k][0]))
    return Consensus(first_seen[key][1], counts[key], len(cases))
