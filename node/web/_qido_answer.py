"""The QIDO-RS answer (PS3.18 §10.6.3) at a level: the catalog's matches in DICOM JSON
with the attributes the level requires, ``InstanceAvailability``, ``RetrieveURL`` and,
when needed, the character set. The QIDO-RS routes and the similar-case extension both
answer with it, so a case reads exactly as a search for it does."""

from __future__ import annotations

from typing import Any

from database import Connection
from node.storage.query import Query, QueryLevelValues
from node.web._dicom_json import find_json, is_ascii

__all__ = ["REQUIRED_KEYS", "qido_answers", "required_keys"]

#: PS3.18 table 10.6.3-3 (study), -4 (series), -5 (instance): what the catalog holds
REQUIRED_KEYS: dict[QueryLevelValues, tuple[str, ...]] = {
    QueryLevelValues.STUDY: (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
        "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate",
        "PatientSex", "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    QueryLevelValues.SERIES: (
        "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
        "NumberOfSeriesRelatedInstances", "StudyInstanceUID",
    ),
    QueryLevelValues.IMAGE: (
        "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
        "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID",
    ),
}

_AVAILABILITY, _RETRIEVE_URL, _CHARSET = "00080056", "00081190", "00080005"
_UID_TAGS = (("0020000D", "studies"), ("0020000E", "series"), ("00080018", "instances"))


def required_keys(level: QueryLevelValues,
                  also: tuple[QueryLevelValues, ...] = ()) -> list[str]:
    """The attributes every answer at ``level`` carries (and those of ``also``)."""
    keys: list[str] = list(REQUIRED_KEYS[level])
    for above in also:
        keys += REQUIRED_KEYS[above]
    return keys


def _uid_lists(filters: dict[str, str]) -> dict[str, str]:
    """QIDO also separates UID lists with commas; the engine takes backslashes."""
    return {k: (v.replace(",", "\\") if k.endswith("UID") else v) for k, v in filters.items()}


def _retrieve_url(base: str, answer: dict[str, dict[str, Any]], level: QueryLevelValues) -> str:
    """``…/studies/{s}``, ``…/studies/{s}/series/{se}`` or ``…/instances/{i}``."""
    url = base
    for tag, name in _UID_TAGS[:level.depth]:  # STUDY: 1, SERIES: 2, IMAGE: 3
        url += f"/{name}/{answer[tag]['Value'][0]}"
    return url


def qido_answers(conn: Connection, level: QueryLevelValues, filters: dict[str, str],
                 keys: list[str], base: str, *, limit: int | None = None,
                 offset: int = 0) -> list[dict[str, dict[str, Any]]]:
    """The QIDO-RS answers (DICOM JSON) at ``level`` for the matching values ``filters``
    and return ``keys``; ``base`` is the DICOMweb root the ``RetrieveURL`` starts with.
    Raises :class:`~node.errors.InvalidQuery` naming a key or value that cannot be used."""
    query = Query(level=level, filters=_uid_lists(filters), return_keys=keys,
                  limit=limit, offset=offset)
    body = find_json(conn, query)
    for answer in body:
        answer[_AVAILABILITY] = {"vr": "CS", "Value": ["ONLINE"]}
        answer[_RETRIEVE_URL] = {"vr": "UR", "Value": [_retrieve_url(base, answer, level)]}
        if not is_ascii(answer):
            answer[_CHARSET] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    return body
