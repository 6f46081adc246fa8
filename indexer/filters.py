"""What a similar-case result must satisfy: :class:`SearchFilters`, tested on a row of
the ``vectors`` table (:meth:`SearchFilters.matches`) or turned into SQL over it
(:meth:`SearchFilters.sql`), the two giving the same answer.

Multi-valued attributes of series and studies (their children's modalities and body
parts) are stored joined with ``\\`` (the DICOM value separator); a filter matches any
of them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from database import DialectValues

if TYPE_CHECKING:
    from indexer.index.vectors import VectorRow

__all__ = ["SearchFilters"]

_DATE = re.compile(r"^\d{8}$")


@dataclasses.dataclass(frozen=True)
class SearchFilters:
    """What a result must satisfy. Dates are ``YYYYMMDD`` and inclusive."""

    modality: str | None = None
    body_part: str | None = None
    study_date_from: str | None = None
    study_date_to: str | None = None
    exclude_patient_id: str | None = None
    exclude_uids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("study_date_from", "study_date_to"):
            value = getattr(self, name)
            if value is not None and not _DATE.match(value):
                raise ValueError(f"{name} must be YYYYMMDD, got {value!r}")
        if (
            self.study_date_from
            and self.study_date_to
            and self.study_date_from > self.study_date_to
        ):
            raise ValueError(
                f"study_date_from ({self.study_date_from}) is after study_date_to "
                f"({self.study_date_to})"
            )
        if not isinstance(self.exclude_uids, frozenset):
            object.__setattr__(self, "exclude_uids", frozenset(self.exclude_uids))

    @property
    def active(self) -> bool:
        return any(
            (
                self.modality,
                self.body_part,
                self.study_date_from,
                self.study_date_to,
                self.exclude_patient_id,
                self.exclude_uids,
            )
        )

    @property
    def narrows(self) -> bool:
        """True when a filter keeps only some keys (not merely excludes a few)."""
        return any((self.modality, self.body_part, self.study_date_from, self.study_date_to))

    def matches(self, row: VectorRow) -> bool:
        """The same test as :meth:`sql`, on one row."""
        if self.modality and self.modality.upper() not in (row.modality or "").split("\\"):
            return False
        if self.body_part and self.body_part.upper() not in (
            (row.body_part or "").upper().split("\\")
        ):
            return False
        if self.study_date_from and not (row.study_date or "") >= self.study_date_from:
            return False
        if self.study_date_to and not (row.study_date and row.study_date <= self.study_date_to):
            return False
        excluded = self.exclude_patient_id
        if excluded is not None and (row.patient_id or "") == excluded:
            return False
        return row.uid not in self.exclude_uids

    def sql(self, dialect: DialectValues = DialectValues.SQLITE) -> tuple[str, list[Any]]:
        """A WHERE fragment over ``vectors`` in ``dialect`` and its parameters
        (multi-values are ``\\``)."""
        clauses: list[str] = []
        params: list[Any] = []
        strpos = dialect.strpos
        if self.modality:
            clauses.append(f"{strpos}('\\' || coalesce(modality, '') || '\\', ?) > 0")
            params.append(f"\\{self.modality.upper()}\\")
        if self.body_part:
            clauses.append(f"{strpos}('\\' || upper(coalesce(body_part, '')) || '\\', ?) > 0")
            params.append(f"\\{self.body_part.upper()}\\")
        if self.study_date_from:
            clauses.append("study_date >= ?")
            params.append(self.study_date_from)
        if self.study_date_to:
            clauses.append("study_date <= ?")
            params.append(self.study_date_to)
        if self.exclude_patient_id is not None:
            clauses.append("coalesce(patient_id, '') != ?")
            params.append(self.exclude_patient_id)
        return (" AND ".join(clauses) or "1 = 1"), params
