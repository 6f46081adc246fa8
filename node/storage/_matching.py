"""How one matching key becomes an SQL condition over the catalog (PS3.4 C.2.2.2): the
matching rules per VR that :mod:`node.storage.query` documents, and the checks a value
must pass first (a real date or time, no control character). Private to the engine.

One form serves both dialects except three fragments (docs/postgres.md §3): wildcards
(SQLite ``GLOB``, PostgreSQL ``LIKE``/``ILIKE``: :meth:`DialectValues.wildcard`), the
planner hint of the computed keys (:meth:`DialectValues.no_index`) and a text column read
as an integer (:func:`as_integer`: PostgreSQL's ``CAST`` fails on ``''`` or ``'1.5'``)."""

from __future__ import annotations

import re

from database import DialectValues
from node.errors import InvalidQuery
from node.storage._attributes import (
    Attribute,
    has_control_character,
    is_valid_da,
    is_valid_tm,
)

__all__ = ["as_integer", "condition_of"]

_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_INT = re.compile(r"^[+-]?\d+$")
_LIST_KEYS = frozenset({"Modality", "ModalitiesInStudy"})
#: SQLite's lower() folds ASCII letters only: a pattern is folded the same way
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _glob(value: str) -> str:
    """A DICOM wildcard pattern as an SQLite GLOB pattern (``[`` is GLOB's only extra)."""
    return value.replace("[", "[[]")


def as_integer(column: str, dialect: DialectValues) -> str:
    """``column`` (an IS value kept as text, or an integer column) read as an integer,
    ``NULL`` where it is not one on PostgreSQL (its ``CAST`` raises on ``''`` or ``'1.5'``,
    which would fail a whole query); SQLite's ``CAST`` reads those as 0 and 1."""
    if dialect is DialectValues.SQLITE:
        return f"CAST({column} AS INTEGER)"
    text = f"CAST({column} AS TEXT)"
    return (f"(CASE WHEN {text} ~ '^\\s*[+-]?[0-9]{{1,18}}\\s*$' "
            f"THEN CAST({text} AS BIGINT) END)")


def condition_of(attribute: Attribute, raw: str, dialect: DialectValues = DialectValues.SQLITE
                 ) -> tuple[str, list[object]] | None:
    """The condition (and its parameters) for matching ``attribute`` against ``raw``, in
    ``dialect``; ``None`` for universal matching. Raises :class:`InvalidQuery`."""
    keyword, vr = attribute.keyword, attribute.vr
    value = raw.strip().strip("\x00").strip()  # padding: spaces, and NUL after a UI
    if has_control_character(value):
        raise InvalidQuery(f"{keyword} value holds a control character: send printable "
                           "text (or leave the key empty to match any value)",
                           attribute=keyword, short=f"{keyword}: control character in value")
    if value in ("", "*"):
        return None  # universal matching
    if attribute.computed:  # ModalitiesInStudy / SOPClassesInStudy: any of the values
        column = "x.modality" if keyword == "ModalitiesInStudy" else "x.sop_class_uid"
        table = "series" if keyword == "ModalitiesInStudy" else "instances"
        values: list[object] = [v.strip() for v in value.split("\\") if v.strip()]
        if not values:
            return None
        marks = ",".join("?" * len(values))
        # unary + keeps SQLite on the study index (not a scan of every MR series)
        sql = (f"EXISTS (SELECT 1 FROM {table} x WHERE x.study_instance_uid = "
               f"st.study_instance_uid AND {dialect.no_index(column)} IN ({marks}))")
        return sql, values
    column = attribute.sql
    if vr == "UI":
        uids: list[object] = [v.strip() for v in value.split("\\") if v.strip()]
        for uid in map(str, uids):
            if not re.fullmatch(r"[0-9.]{1,64}", uid):
                raise InvalidQuery(
                    f"{keyword} value {uid[:70]!r} is not a UID (digits and dots); UIDs match "
                    "exactly, several separated by a backslash", attribute=keyword,
                    short=f"{keyword}: not a UID (digits and dots)")
        if len(uids) == 1:
            return f"{column} = ?", uids
        return f"{column} IN ({','.join('?' * len(uids))})", uids
    if vr in ("DA", "TM"):
        return _range(keyword, vr, column, value)
    if vr in ("IS", "US", "UL", "SS", "SL"):
        if not _INT.match(value):
            raise InvalidQuery(f"{keyword} value {value[:40]!r} is not an integer",
                               attribute=keyword, short=f"{keyword}: not an integer")
        return f"{as_integer(column, dialect)} = ?", [int(value)]
    if keyword in _LIST_KEYS and "\\" in value:
        items: list[object] = [v.strip() for v in value.split("\\") if v.strip()]
        return f"{column} IN ({','.join('?' * len(items))})", items
    wildcard = "*" in value or "?" in value
    if vr == "PN":
        if wildcard and dialect is DialectValues.SQLITE:
            return _prefix_range(f"lower({column})", value.translate(_ASCII_LOWER))
        if wildcard:  # ILIKE: PostgreSQL folds case beyond ASCII (docs/api.md)
            sql, pattern = dialect.wildcard(column, value, case_sensitive=False)
            return sql, [pattern]
        return f"lower({column}) = lower(?)", [value]
    if wildcard:
        sql, pattern = dialect.wildcard(column, value)
        return sql, [pattern]
    return f"{column} = ?", [value]


def _prefix_range(expression: str, pattern: str) -> tuple[str, list[object]]:
    """``expression GLOB pattern``, and, when the pattern starts with plain characters,
    the range of values with that prefix too, so an index on ``expression`` is used
    (``Doe^J*`` reads the names from ``doe^j`` up to ``doe^k``, not every study)."""
    sql, params = f"{expression} GLOB ?", [_glob(pattern)]
    prefix = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    if prefix and ord(prefix[-1]) < 0x10FFFF:
        bounds: list[object] = [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        return f"{expression} >= ? AND {expression} < ? AND {sql}", [*bounds, *params]
    return sql, [*params]


def _range(keyword: str, vr: str, column: str, value: str) -> tuple[str, list[object]]:
    pattern, valid = (_DATE, is_valid_da) if vr == "DA" else (_TIME, is_valid_tm)
    form = "YYYYMMDD" if vr == "DA" else "HHMMSS"
    low, dash, high = value.partition("-")
    low, high = low.strip(), high.strip()
    for part in (low, high) if dash else (low,):
        if part and not pattern.match(part):
            raise InvalidQuery(
                f"{keyword} value {value[:40]!r} is not a {vr}: use {form}, or a range "
                f"{form}-{form}, -{form} or {form}-", attribute=keyword,
                short=f"{keyword}: use {form} or a range {form}-{form}")
        if part and not valid(part):
            what = "day (month 01-12, a day the month has)" if vr == "DA" else \
                "time of day (hours 00-23, minutes 00-59, seconds 00-60)"
            raise InvalidQuery(f"{keyword} value {value[:40]!r} is not a {vr}: {part} is not "
                               f"a {what}", attribute=keyword,
                               short=f"{keyword}: {part} is not a valid {vr}")
    if not dash:
        if vr == "TM":  # a partial time matches every time it is a prefix of
            return f"substr({column}, 1, ?) = ?", [len(low), low]
        return f"{column} = ?", [low]
    if not low and not high:
        raise InvalidQuery(f"{keyword} range {value!r} has no bound", attribute=keyword)
    clauses: list[str] = []
    params: list[object] = []
    if low:
        clauses.append(f"{column} >= ?")
        params.append(low)
    if high:
        # '\x7f' sorts after every digit: "1200" as an upper bound takes in 12:00:30
        clauses.append(f"{column} <= ?")
        params.append(high + "\x7f" if vr == "TM" else high)
    return " AND ".join(clauses), params
