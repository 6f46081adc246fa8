"""The similar-case extension's parameters, shared by its routes and the KOS route:
``limit``, ``Modality``, ``BodyPartExamined``, ``StudyDate``, ``excludePatient``,
``positive``, ``negative`` and ``minScore`` as one dependency (``params: SimilarParamsDep``), and
:func:`similar_query`, which checks them into a :class:`~node.retrieval.SimilarQuery`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from node.retrieval import SimilarQuery
from node.storage.query import QueryLevelValues
from node.web._deps import check_uid

__all__ = ["SimilarParams", "SimilarParamsDep", "similar_query"]


def _uids(values: Sequence[str], name: str) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        out += [check_uid(v.strip(), name) for v in value.split(",") if v.strip()]
    return tuple(out)


def similar_query(*, level: QueryLevelValues | str, limit: int, modality: str | None,
                  body_part: str | None, study_date: str | None,
                  exclude_patient: bool | None, positive: Sequence[str],
                  negative: Sequence[str], min_score: float | None = None) -> SimilarQuery:
    """The query the parameters describe; a :class:`~node.errors.BadRequest` or
    :class:`~node.errors.InvalidQuery` names the wrong one. ``level`` is a level, or the
    ``level`` parameter as sent (``study``, ``series`` or ``instance``)."""
    index_level = level.index_level if isinstance(level, QueryLevelValues) else level
    return SimilarQuery(
        level=index_level,  # type: ignore[arg-type]  # a str is converted and checked there
        limit=limit, modality=modality, body_part=body_part,
        study_date=study_date, exclude_patient=exclude_patient,
        positive=_uids(positive, "positive"), negative=_uids(negative, "negative"),
        min_score=min_score,
    )


# the query parameters every similar-case route shares
_Limit = Annotated[int, Query(description="results, 1 to 100")]
_Modality = Annotated[str | None, Query(alias="Modality")]
_BodyPart = Annotated[str | None, Query(alias="BodyPartExamined")]
_StudyDate = Annotated[str | None, Query(alias="StudyDate",
                                         description="YYYYMMDD or YYYYMMDD-YYYYMMDD")]
_ExcludePatient = Annotated[bool | None, Query(alias="excludePatient")]
_Feedback = Annotated[list[str], Query()]
_MinScore = Annotated[float | None, Query(
    alias="minScore", description="the lowest cosine a result may have, -1 to 1")]


@dataclass(frozen=True, slots=True)
class SimilarParams:
    """The query parameters every similar-case route shares."""

    limit: int
    modality: str | None
    body_part: str | None
    study_date: str | None
    exclude_patient: bool | None
    positive: list[str]
    negative: list[str]
    min_score: float | None = None

    def query(self, level: QueryLevelValues | str, *, exclude_patient: bool | None = None,
              default_min_score: float | None = None) -> SimilarQuery:
        """The query at ``level``; ``exclude_patient`` overrides the parameter, and
        ``default_min_score`` is the floor when ``minScore`` is not given."""
        return similar_query(
            level=level, limit=self.limit, modality=self.modality, body_part=self.body_part,
            study_date=self.study_date,
            exclude_patient=self.exclude_patient if exclude_patient is None
            else exclude_patient,
            positive=self.positive, negative=self.negative,
            min_score=default_min_score if self.min_score is None else self.min_score)


async def _similar_params(  # async: no thread-pool hop (see node.web._deps)
    limit: _Limit = 10, modality: _Modality = None, body_part: _BodyPart = None,
    study_date: _StudyDate = None, exclude_patient: _ExcludePatient = None,
    positive: _Feedback = [],  # noqa: B006
    negative: _Feedback = [],  # noqa: B006
    min_score: _MinScore = None,
) -> SimilarParams:
    return SimilarParams(limit, modality, body_part, study_date, exclude_patient,
                         positive, negative, min_score)


SimilarParamsDep = Annotated[SimilarParams, Depends(_similar_params)]
