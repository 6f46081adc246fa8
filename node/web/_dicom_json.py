"""Catalog matches in the DICOM JSON model (PS3.18 F.2), as
:func:`node.storage.query.find` then pydicom's ``to_json_dict()`` would give them,
without building data sets."""

from __future__ import annotations

import sqlite3

from pydicom.datadict import tag_for_keyword

from node.storage.query import Query, attribute_vr, find_values

__all__ = ["find_json", "json_value"]


def json_value(vr: str, value: object) -> list[object]:
    """A data element value (one, or a list) as the ``Value`` array of its VR: person
    names as ``{"Alphabetic", "Ideographic", "Phonetic"}``, IS as numbers."""
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        out: list[object] = []
        for v in values:
            groups = str(v).split("=")
            out.append({name: g for name, g in zip(("Alphabetic", "Ideographic", "Phonetic"),
                                                   groups, strict=False) if g})
        return out
    if vr == "IS":
        numbers: list[object] = []
        for v in values:
            try:
                numbers.append(int(str(v).strip()))
            except ValueError:
                continue  # not an integer string: left out rather than sent wrong
        return numbers
    return list(values)


def find_json(conn: sqlite3.Connection, query: Query) -> list[dict[str, dict[str, object]]]:
    """The matches of ``query``, each a DICOM JSON object keyed by tag (``0020000D``);
    an empty attribute has its ``vr`` and no ``Value``."""
    columns = [(keyword, f"{tag_for_keyword(keyword):08X}", attribute_vr(keyword))
               for keyword in query.return_keys]
    answers = []
    for values in find_values(conn, query):
        answer: dict[str, dict[str, object]] = {}
        for keyword, tag, vr in columns:
            value = values[keyword]
            element: dict[str, object] = {"vr": vr}
            if value is not None:
                converted = json_value(vr, value)
                if converted:
                    element["Value"] = converted
            answer[tag] = element
        answers.append(answer)
    return answers
