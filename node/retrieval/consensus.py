"""The consensus of an answer: the label most of its cases carry (a majority vote)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Consensus", "Labelled", "consensus"]


class Labelled(Protocol):
    """A case as the vote sees it: its labels."""

    @property
    def labels(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Consensus:
    """The majority vote over the results' labels."""

    label: str
    count: int
    of: int

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "count": self.count, "of": self.of}


def consensus(cases: Sequence[Labelled]) -> Consensus | None:
    """The label most cases carry (each case counts a label once, case-insensitively);
    a tie goes to the label of the better-ranked case (``cases`` are best first).
    ``None`` when no case has labels."""
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
