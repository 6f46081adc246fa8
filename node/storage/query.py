"""One matching engine for C-FIND and QIDO-RS over the catalog (PS3.4 C.2.2.2).

A :class:`Query` names a level (PATIENT, STUDY, SERIES, IMAGE), the matching keys and
the return keys; it compiles to one parameterised SQL statement over
``studies``/``series``/``instances``. :func:`find` answers pydicom data sets (C-FIND),
:func:`find_values` the plain values (QIDO-RS encodes them as DICOM JSON in
:mod:`node.web`). :func:`find_files` runs the same matching at instance level and
answers the stored files (C-MOVE, C-GET); :func:`instance_files` looks them up by UID
(WADO-RS). The attributes, their levels and VRs are in :mod:`node.storage._attributes`;
how each key becomes an SQL condition is :mod:`node.storage._matching`.

Matching, per key (an empty value, or ``*``, matches everything):

========================  ==============================================================
UI (UIDs)                 single UID or a list ``uid1\\uid2`` (any of them)
DA, TM                    single value or a range ``A-B``, ``-B``, ``A-`` (inclusive);
                          each a real date (no month 13) or time of day (hours 00-23)
PN                        single value or wildcards ``*`` ``?``, case-insensitive (ASCII
                          letters on SQLite, as its lower(); all letters on PostgreSQL); on
                          SQLite a pattern that starts with plain characters reads only that
                          range of the name index
other strings             single value or wildcards, case-sensitive; ``A\\B`` for
                          Modality and ModalitiesInStudy matches any of them
IS, US                    single integer
========================  ==============================================================

A value that still holds a control character once its padding (spaces, a UID's
trailing NUL) is stripped is refused, whatever the VR. QIDO-RS values carry no padding:
:mod:`node.web.qido` refuses any control character, so ``PatientName=%00`` is a 400,
not a universal match.

Keys of the query level and of the levels above it take part in matching (so QIDO's
``/series?PatientID=…`` and a C-FIND SERIES query with a study key both work). The
computed attributes (``ModalitiesInStudy``, ``NumberOfStudyRelatedInstances`` …) are
returned and, for ``ModalitiesInStudy`` and ``SOPClassesInStudy``, matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from pydicom.dataset import Dataset

from database import Connection, DialectValues, dialect_of
from node.errors import InvalidQuery
from node.storage._attributes import (
    ATTRIBUTES,
    CONSTANT_KEYS,
    UNIQUE_KEYS,
    QueryLevelValues,
    attribute_keyword,
    attribute_vr,
    element_value,
    has_control_character,
    is_supported,
    is_valid_da,
    is_valid_tm,
    supported_keys,
)
from node.storage._matching import as_integer, condition_of

__all__ = [
    "CONSTANT_KEYS",
    "UNIQUE_KEYS",
    "InstanceFile",
    "Query",
    "QueryLevelValues",
    "attribute_keyword",
    "attribute_vr",
    "find",
    "find_files",
    "find_values",
    "has_control_character",
    "instance_files",
    "is_supported",
    "is_valid_da",
    "is_valid_tm",
    "supported_keys",
]

_P, _ST, _SE, _IM = (QueryLevelValues.PATIENT, QueryLevelValues.STUDY,
                     QueryLevelValues.SERIES, QueryLevelValues.IMAGE)

_FROM = {
    _P: "studies st",
    _ST: "studies st",
    _SE: "series se JOIN studies st ON st.study_instance_uid = se.study_instance_uid",
    _IM: "instances i JOIN series se ON se.series_instance_uid = i.series_instance_uid "
         "JOIN studies st ON st.study_instance_uid = i.study_instance_uid",
}
_ORDER = {_P: "min(st.rowid)", _ST: "st.rowid", _SE: "se.rowid", _IM: "i.rowid"}



class Query:
    """A search at one level: ``filters`` maps keywords to DICOM matching values.

    Keys unknown at ``level`` (below it, or not catalogued) raise :class:`InvalidQuery`
    unless ``ignore_unsupported`` is set (C-FIND: they are answered empty); keys in
    ``return_keys`` that are not catalogued are left out of the answers.
    """

    def __init__(
        self,
        *,
        level: QueryLevelValues | str,
        filters: Mapping[str, str] | None = None,
        return_keys: Iterable[str] = (),
        limit: int | None = None,
        offset: int = 0,
        ignore_unsupported: bool = False,
    ) -> None:
        try:
            self.level = (level if isinstance(level, QueryLevelValues)
                          else QueryLevelValues(str(level).strip().upper()))
        except ValueError as exc:
            allowed = ", ".join(v.value for v in QueryLevelValues)
            raise InvalidQuery(f"query level {level!r} is not valid: use one of {allowed}",
                               attribute="QueryRetrieveLevel",
                               short=f"QueryRetrieveLevel: use {allowed}") from exc
        if limit is not None and limit < 0:
            raise InvalidQuery(f"limit must be zero or more, not {limit}", attribute="limit")
        if offset < 0:
            raise InvalidQuery(f"offset must be zero or more, not {offset}", attribute="offset")
        self.limit, self.offset = limit, offset
        self.filters: dict[str, str] = {}
        self.ignored: list[str] = []
        for keyword, value in (filters or {}).items():
            if not is_supported(keyword, self.level) or not ATTRIBUTES[keyword].matchable:
                if ignore_unsupported or keyword in CONSTANT_KEYS:
                    self.ignored.append(keyword)
                    continue
                raise InvalidQuery(
                    f"{keyword} cannot be matched in a {self.level.value} level query; "
                    f"matching keys are: {', '.join(self.matching_keys())}",
                    attribute=keyword,
                    short=f"{keyword} cannot be matched at {self.level.value} level",
                )
            self.filters[keyword] = value
        self.return_keys = [k for k in dict.fromkeys([*return_keys, *self.filters])
                            if is_supported(k, self.level)]
        if UNIQUE_KEYS[self.level] not in self.return_keys:
            self.return_keys.insert(0, UNIQUE_KEYS[self.level])
        _where(self.filters, DialectValues.SQLITE)  # the values are checked here, once

    def matching_keys(self) -> list[str]:
        return [k for k in supported_keys(self.level) if ATTRIBUTES[k].matchable]

    def sql(self, dialect: DialectValues = DialectValues.SQLITE) -> tuple[str, list[object]]:
        """The SELECT statement in ``dialect`` and its parameters."""
        columns = ", ".join(_select(self.level, k, dialect) for k in self.return_keys)
        sql = f"SELECT {columns} FROM {_FROM[self.level]}"
        where, params = _where(self.filters, dialect)
        if where:
            sql += " WHERE " + " AND ".join(where)
        if self.level is _P:
            sql += " GROUP BY st.patient_id"
        sql += f" ORDER BY {_ORDER[self.level]} LIMIT ? OFFSET ?"
        # no limit: SQLite takes -1, PostgreSQL NULL (each refuses the other's)
        unlimited = -1 if dialect is DialectValues.SQLITE else None
        return sql, [*params, unlimited if self.limit is None else self.limit, self.offset]


def _select(level: QueryLevelValues, keyword: str, dialect: DialectValues) -> str:
    attribute = ATTRIBUTES[keyword]
    if level is _P and not attribute.computed:
        return f"max({attribute.sql})"  # one value per patient (the rows agree, or close)
    return attribute.expression(dialect)


def _where(filters: Mapping[str, str], dialect: DialectValues
           ) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    for keyword, raw in filters.items():
        condition = condition_of(ATTRIBUTES[keyword], raw, dialect)
        if condition is not None:
            clauses.append(condition[0])
            params.extend(condition[1])
    return clauses, params


def find_values(conn: Connection, query: Query) -> list[dict[str, object]]:
    """The matches of ``query``, each its return keys (in order) to their values as
    data element values (``None`` when empty, multi-valued ones as lists)."""
    sql, params = query.sql(dialect_of(conn))
    return [{keyword: element_value(keyword, value)
             for keyword, value in zip(query.return_keys, tuple(row), strict=True)}
            for row in conn.execute(sql, params)]


def find(conn: Connection, query: Query) -> list[Dataset]:
    """The matches of ``query``, each a data set holding its return keys."""
    answers = []
    for values in find_values(conn, query):
        ds = Dataset()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        answers.append(ds)
    return answers


# --------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class InstanceFile:
    """One stored instance and where its bytes are (``path`` relative to data_dir)."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    transfer_syntax_uid: str | None
    path: PurePosixPath
    number_of_frames: int | None
    rows: int | None
    columns: int | None


_FILE_COLUMNS = ("i.sop_instance_uid, i.sop_class_uid, i.series_instance_uid, "
                 "i.study_instance_uid, i.transfer_syntax_uid, i.path, i.number_of_frames, "
                 "i.rows, i.columns")


def _file(row: Iterable[object]) -> InstanceFile:
    values = tuple(row)
    return InstanceFile(
        str(values[0]), str(values[1]), str(values[2]), str(values[3]),
        None if values[4] is None else str(values[4]), PurePosixPath(str(values[5])),
        values[6] if isinstance(values[6], int) else None,
        values[7] if isinstance(values[7], int) else None,
        values[8] if isinstance(values[8], int) else None,
    )


def find_files(conn: Connection, query: Query) -> list[InstanceFile]:
    """Every stored instance under the entities ``query`` matches (C-MOVE, C-GET)."""
    dialect = dialect_of(conn)
    clauses, params = _where(query.filters, dialect)
    sql = f"SELECT {_FILE_COLUMNS} FROM {_FROM[_IM]}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += (" ORDER BY i.study_instance_uid, i.series_instance_uid, "
            f"{as_integer('i.instance_number', dialect)}, i.rowid")
    return [_file(row) for row in conn.execute(sql, params)]


def instance_files(
    conn: Connection,
    *,
    study_instance_uid: str,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> list[InstanceFile]:
    """The stored instances of a study, a series of it, or one instance (WADO-RS),
    ordered by series and instance number; empty when none is stored."""
    sql = f"SELECT {_FILE_COLUMNS} FROM instances i WHERE i.study_instance_uid = ?"
    params: list[object] = [study_instance_uid]
    if series_instance_uid is not None:
        sql += " AND i.series_instance_uid = ?"
        params.append(series_instance_uid)
    if sop_instance_uid is not None:
        sql += " AND i.sop_instance_uid = ?"
        params.append(sop_instance_uid)
    sql += (" ORDER BY i.series_instance_uid, "
            f"{as_integer('i.instance_number', dialect_of(conn))}, i.rowid")
    return [_file(row) for row in conn.execute(sql, params)]
