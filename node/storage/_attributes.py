"""The attributes the catalog can match and return, per Query/Retrieve level (PS3.4 C.6).

:class:`QueryLevelValues` is the node's one query-level enum (C-FIND, C-MOVE, QIDO-RS, the
similar-case answers); :meth:`QueryLevelValues.of` is the one mapping from the indexer's
:class:`indexer.LevelValues`. The registry maps each DICOM keyword to the SQL expression
that holds it over the catalog's tables (aliases ``st`` studies, ``se`` series, ``i``
instances), its level and its VR; :mod:`node.storage.query` compiles queries from it.
The value checks a matching key's value must pass (a real date, a real time, no control
character) are here too, so C-FIND, QIDO-RS and the similar-case filters share them.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from enum import Enum

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import Tag

from database import DialectValues
from indexer import LevelValues

__all__ = [
    "ATTRIBUTES",
    "CONSTANT_KEYS",
    "UNIQUE_KEYS",
    "Attribute",
    "QueryLevelValues",
    "attribute_keyword",
    "attribute_vr",
    "element_value",
    "has_control_character",
    "is_supported",
    "is_valid_da",
    "is_valid_tm",
    "supported_keys",
]


class QueryLevelValues(str, Enum):
    """Query/Retrieve levels (0008,0052)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        """0 (PATIENT) to 3 (IMAGE): a level matches the keys of its own and those above."""
        return _DEPTH[self]

    @property
    def unique_key(self) -> str:
        """The keyword of the level's unique key (PatientID, StudyInstanceUID, …)."""
        return UNIQUE_KEYS[self]

    @classmethod
    def of(cls, level: LevelValues | str) -> QueryLevelValues:
        """The Query/Retrieve level of an index level (``instance`` is IMAGE)."""
        return _OF_INDEX_LEVEL[LevelValues(level)]

    @property
    def index_level(self) -> LevelValues:
        """The index level of this level (IMAGE is ``instance``); PATIENT has none."""
        for index_level, level in _OF_INDEX_LEVEL.items():
            if level is self:
                return index_level
        raise ValueError(f"the {self.value} level has no vectors: use STUDY, SERIES or IMAGE")


#: the one mapping between the indexer's levels and the node's
_OF_INDEX_LEVEL = {
    LevelValues.STUDY: QueryLevelValues.STUDY,
    LevelValues.SERIES: QueryLevelValues.SERIES,
    LevelValues.INSTANCE: QueryLevelValues.IMAGE,
}

_DEPTH = {
    QueryLevelValues.PATIENT: 0,
    QueryLevelValues.STUDY: 1,
    QueryLevelValues.SERIES: 2,
    QueryLevelValues.IMAGE: 3,
}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One catalogued attribute: where it is, at which level, with which VR."""

    keyword: str
    level: QueryLevelValues
    sql: str  #: an SQL expression over the aliases st (studies), se (series), i (instances)
    vr: str
    computed: bool = False
    multi: bool = False  #: values are stored joined (``\\`` or ``,``) and returned split
    matchable: bool = True
    #: the column whose distinct values ``{agg}`` in :attr:`sql` joins (multi computed keys)
    aggregate: str | None = None

    def expression(self, dialect: DialectValues) -> str:
        """:attr:`sql` for ``dialect`` (the comma-joined aggregate is written per dialect)."""
        if self.aggregate is None:
            return self.sql
        return self.sql.format(agg=dialect.string_agg(self.aggregate))


def _column(keyword: str, level: QueryLevelValues, sql: str) -> Attribute:
    return Attribute(keyword, level, sql, dictionary_VR(keyword))


_P, _ST, _SE, _IM = (QueryLevelValues.PATIENT, QueryLevelValues.STUDY,
                     QueryLevelValues.SERIES, QueryLevelValues.IMAGE)

_PATIENT_STUDIES = (
    "(SELECT y.study_instance_uid FROM studies y "
    "WHERE y.patient_id IS NOT DISTINCT FROM st.patient_id)"
)

ATTRIBUTES: dict[str, Attribute] = {a.keyword: a for a in [
    _column("PatientName", _P, "st.patient_name"),
    _column("PatientID", _P, "st.patient_id"),
    _column("PatientBirthDate", _P, "st.patient_birth_date"),
    _column("PatientSex", _P, "st.patient_sex"),
    _column("StudyInstanceUID", _ST, "st.study_instance_uid"),
    _column("StudyDate", _ST, "st.study_date"),
    _column("StudyTime", _ST, "st.study_time"),
    _column("AccessionNumber", _ST, "st.accession_number"),
    _column("StudyID", _ST, "st.study_id"),
    _column("StudyDescription", _ST, "st.study_description"),
    _column("ReferringPhysicianName", _ST, "st.referring_physician_name"),
    _column("SeriesInstanceUID", _SE, "se.series_instance_uid"),
    _column("Modality", _SE, "se.modality"),
    _column("SeriesNumber", _SE, "se.series_number"),
    _column("SeriesDescription", _SE, "se.series_description"),
    _column("BodyPartExamined", _SE, "se.body_part_examined"),
    _column("SeriesDate", _SE, "se.series_date"),
    _column("SeriesTime", _SE, "se.series_time"),
    _column("SOPInstanceUID", _IM, "i.sop_instance_uid"),
    _column("SOPClassUID", _IM, "i.sop_class_uid"),
    _column("InstanceNumber", _IM, "i.instance_number"),
    _column("Rows", _IM, "i.rows"),
    _column("Columns", _IM, "i.columns"),
    _column("NumberOfFrames", _IM, "i.number_of_frames"),
    Attribute("AvailableTransferSyntaxUID", _IM, "i.transfer_syntax_uid", "UI"),
    # computed attributes (PS3.4 C.3): subqueries, evaluated only when returned
    Attribute("NumberOfPatientRelatedStudies", _P,
               "(SELECT count(*) FROM studies y "
               "WHERE y.patient_id IS NOT DISTINCT FROM st.patient_id)",
               "IS", computed=True, matchable=False),
    Attribute("NumberOfPatientRelatedSeries", _P,
               f"(SELECT count(*) FROM series x WHERE x.study_instance_uid IN {_PATIENT_STUDIES})",
               "IS", computed=True, matchable=False),
    Attribute("NumberOfPatientRelatedInstances", _P,
               "(SELECT count(*) FROM instances x "
               f"WHERE x.study_instance_uid IN {_PATIENT_STUDIES})",
               "IS", computed=True, matchable=False),
    Attribute("ModalitiesInStudy", _ST,
               "(SELECT {agg} FROM series x "
               "WHERE x.study_instance_uid = st.study_instance_uid)",
               "CS", computed=True, multi=True, aggregate="x.modality"),
    Attribute("SOPClassesInStudy", _ST,
               "(SELECT {agg} FROM instances x "
               "WHERE x.study_instance_uid = st.study_instance_uid)",
               "UI", computed=True, multi=True, aggregate="x.sop_class_uid"),
    Attribute("NumberOfStudyRelatedSeries", _ST,
               "(SELECT count(*) FROM series x WHERE x.study_instance_uid = st.study_instance_uid)",
               "IS", computed=True, matchable=False),
    Attribute("NumberOfStudyRelatedInstances", _ST,
               "(SELECT count(*) FROM instances x "
               "WHERE x.study_instance_uid = st.study_instance_uid)",
               "IS", computed=True, matchable=False),
    Attribute("NumberOfSeriesRelatedInstances", _SE,
               "(SELECT count(*) FROM instances x "
               "WHERE x.series_instance_uid = se.series_instance_uid)",
               "IS", computed=True, matchable=False),
]}

#: the unique key of each level
UNIQUE_KEYS = {
    _P: "PatientID",
    _ST: "StudyInstanceUID",
    _SE: "SeriesInstanceUID",
    _IM: "SOPInstanceUID",
}

#: keys answered with a constant (they need the caller's context: the node's AE title)
CONSTANT_KEYS = frozenset({"QueryRetrieveLevel", "RetrieveAETitle", "InstanceAvailability",
                           "SpecificCharacterSet"})


def attribute_keyword(name: str) -> str | None:
    """The DICOM keyword for ``name``: a keyword (``PatientID``) or a tag (``00100020``);
    ``None`` when it is neither."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        keyword = keyword_for_tag(Tag(int(name, 16)))
        return keyword or None
    return name if tag_for_keyword(name) is not None else None


def attribute_vr(keyword: str) -> str:
    """The VR the catalog answers ``keyword`` with (a catalogued keyword)."""
    return ATTRIBUTES[keyword].vr


def supported_keys(level: QueryLevelValues | str) -> list[str]:
    """The attributes that can be matched or returned at ``level`` (its own and above)."""
    depth = QueryLevelValues(level).depth
    return [k for k, a in ATTRIBUTES.items() if a.level.depth <= depth]


def is_supported(keyword: str, level: QueryLevelValues | str) -> bool:
    attribute = ATTRIBUTES.get(keyword)
    return attribute is not None and attribute.level.depth <= QueryLevelValues(level).depth


def element_value(keyword: str, value: object) -> object:
    """A catalog value of ``keyword`` as a data element value: ``None`` when empty,
    multi-valued attributes as a list, integers for the binary integer VRs."""
    attribute = ATTRIBUTES[keyword]
    if value is None or value == "":
        return None
    if attribute.multi:
        return sorted(str(value).split(","))
    if attribute.vr in ("US", "UL", "SS", "SL"):
        return int(value)  # type: ignore[call-overload]
    if attribute.vr == "IS":
        return str(value)
    text = str(value)
    return text.split("\\") if "\\" in text else text


_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,6})?)?)?$")
#: C0 controls and DEL; ESC (0x1B) is left to the ISO 2022 code extensions of PN and LO
_CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")


def is_valid_da(text: str) -> bool:
    """``text`` is a DA value (PS3.5 6.2): ``YYYYMMDD`` naming a real day (not month 13,
    not 30 February)."""
    if not _DA.match(text):
        return False
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def is_valid_tm(text: str) -> bool:
    """``text`` is a TM value (PS3.5 6.2): ``HH[MM[SS[.F{1,6}]]]`` with hours 00-23,
    minutes 00-59 and seconds 00-60 (a leap second)."""
    match = _TM.match(text)
    if match is None:
        return False
    hours, minutes, seconds = match.groups()
    return (int(hours) < 24 and (minutes is None or int(minutes) < 60)
            and (seconds is None or int(seconds) <= 60))


def has_control_character(text: str) -> bool:
    """``text`` holds a control character no matching value may carry (NUL, TAB, LF …;
    ESC is allowed for ISO 2022 code extensions)."""
    return _CONTROL.search(text) is not None
