"""The similar-case answer in DICOM JSON: each case as a QIDO-RS search of its level
answers for it (:mod:`node.web._qido_answer`, so both read the same), then the PRECEDENT
private block (docs/internals.md) and, per answer, the ``Precedent-Ranking`` header (what
the order is based on) and the ``Precedent-Consensus`` header (only with the support
``[retrieval]`` asks for)."""

from __future__ import annotations

import json
from typing import Any

from pydicom.datadict import tag_for_keyword

from database import Connection
from node.retrieval import EXCERPT_CHARS, Case, ConsensusMinimum, SimilarAnswer, excerpt
from node.settings import RetrievalSettings
from node.storage.query import Query, QueryLevelValues
from node.web._dicom_json import find_json
from node.web._qido_answer import qido_answers, required_keys

__all__ = ["CONSENSUS_HEADER", "PRIVATE_CREATOR", "RANKING_HEADER", "answer_headers",
           "answer_json"]

CONSENSUS_HEADER = "Precedent-Consensus"
RANKING_HEADER = "Precedent-Ranking"
PRIVATE_CREATOR = "PRECEDENT"

#: the levels above whose attributes a result carries too (as the flat QIDO-RS routes)
_ALSO = {QueryLevelValues.STUDY: (),
         QueryLevelValues.SERIES: (QueryLevelValues.STUDY,),
         QueryLevelValues.IMAGE: (QueryLevelValues.SERIES, QueryLevelValues.STUDY)}
#: what the panel shows beside the required attributes
_SHOWN = ["StudyDescription", "BodyPartExamined", "SeriesDate"]
_BODY_PART, _SERIES_UID = "00180015", "0020000E"


def _tag(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


def _case_uid(case: Case, level: QueryLevelValues) -> str | None:
    if level is QueryLevelValues.STUDY:
        return case.study_instance_uid
    if level is QueryLevelValues.SERIES:
        return case.series_instance_uid
    return case.sop_instance_uid


def _private_block(case: Case, base: str) -> dict[str, dict[str, Any]]:
    """The PRECEDENT private block of one result (docs/internals.md)."""
    block: dict[str, dict[str, Any]] = {
        "00110010": {"vr": "LO", "Value": [PRIVATE_CREATOR]},
        "00111001": {"vr": "FD", "Value": [round(case.score, 6)]},
        "00111002": {"vr": "IS", "Value": [case.rank]},
    }
    if case.best_instance_uid:
        block["00111003"] = {"vr": "UI", "Value": [case.best_instance_uid]}
    if case.report is not None:
        block["00111004"] = {"vr": "UT", "Value": [excerpt(case.report.text, EXCERPT_CHARS)]}
        block["00111005"] = {"vr": "UR",
                             "Value": [f"{base}/studies/{case.study_instance_uid}/report"]}
        if case.report.labels:
            block["00111006"] = {"vr": "LO",
                                 "Value": [label[:64] for label in case.report.labels]}
    if case.best_series_uid:
        block["00111007"] = {"vr": "UI", "Value": [case.best_series_uid]}
    if case.ranking_score is not None:  # a fused answer: the score its order is based on
        block["00111008"] = {"vr": "FD", "Value": [case.ranking_score]}
    return block


def _best_series_body_parts(conn: Connection, answer: SimilarAnswer
                            ) -> dict[str, Any]:
    """Study level: the BodyPartExamined element of each case's best series."""
    best = [c.best_series_uid for c in answer.cases if c.best_series_uid]
    if not best:
        return {}
    query = Query(level=QueryLevelValues.SERIES, filters={"SeriesInstanceUID": "\\".join(best)},
                  return_keys=["SeriesInstanceUID", "BodyPartExamined"])
    return {item[_SERIES_UID]["Value"][0]: item[_BODY_PART] for item in find_json(conn, query)}


def answer_json(conn: Connection, answer: SimilarAnswer, base: str
                ) -> list[dict[str, Any]]:
    """The QIDO-RS-shaped DICOM JSON array of an answer, best first; a case deleted
    since the search is left out."""
    level = QueryLevelValues.of(answer.level)
    uids = [uid for case in answer.cases if (uid := _case_uid(case, level))]
    if not uids:
        return []
    uid_tag = _tag(level.unique_key)
    found = qido_answers(conn, level, {level.unique_key: "\\".join(uids)},
                         required_keys(level, _ALSO[level]) + _SHOWN, base)
    by_uid = {item[uid_tag]["Value"][0]: item for item in found}
    body_parts = (_best_series_body_parts(conn, answer)
                  if level is QueryLevelValues.STUDY else {})
    items: list[dict[str, Any]] = []
    for case in answer.cases:
        found_item = by_uid.get(_case_uid(case, level) or "")
        if found_item is None:
            continue  # deleted between the search and now
        if case.best_series_uid in body_parts:
            found_item[_BODY_PART] = body_parts[case.best_series_uid]
        found_item.update(_private_block(case, base))
        items.append(found_item)
    return items


def answer_headers(answer: SimilarAnswer, settings: RetrievalSettings) -> dict[str, str]:
    """``Precedent-Ranking`` (``cosine`` or ``rrf``), and ``Precedent-Consensus`` when the
    majority label has the support ``settings`` ask for (absent below it)."""
    headers = {RANKING_HEADER: answer.ranking.value}
    minimum = ConsensusMinimum(cases=settings.consensus_min_cases,
                               fraction=settings.consensus_min_fraction)
    if answer.consensus is not None and minimum.met_by(answer.consensus):
        headers[CONSENSUS_HEADER] = json.dumps(answer.consensus.as_json(minimum))
    return headers
