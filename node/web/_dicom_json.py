"""Catalog matches in the DICOM JSON model (PS3.18 F.2), as
:func:`node.storage.query.find` then pydicom's ``to_json_dict()`` would give them,
without building data sets; and :class:`DicomJSONResponse`, which encodes an answer
with orjson (JSON encoding was a sixth of a similar-case request with the standard
library's encoder)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi.responses import Response
from pydicom.datadict import tag_for_keyword

from database import Connection
from node.storage.query import Query, attribute_vr, find_values
from node.web._deps import DICOM_JSON

__all__ = ["DicomJSONResponse", "find_json", "is_ascii", "json_value"]

#: IS values (PS3.5: -2^31 … 2^31-1) outside a 64-bit integer are left out, not sent wrong
_INT64 = range(-(2**63), 2**63)


class DicomJSONResponse(Response):
    """An ``application/dicom+json`` answer, UTF-8, encoded with orjson (the standard
    library's encoder for what orjson refuses, such as integers beyond 64 bits)."""

    media_type = DICOM_JSON

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # orjson.JSONEncodeError
            return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def is_ascii(answer: dict[str, dict[str, Any]]) -> bool:
    """Whether every text value of a DICOM JSON object is ASCII (else it needs its
    character set, ISO_IR 192)."""
    for element in answer.values():
        for value in element.get("Value", ()):
            if isinstance(value, str):
                if not value.isascii():
                    return False
            elif isinstance(value, dict) and not all(str(v).isascii() for v in value.values()):
                return False
    return True


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
                number = int(str(v).strip())
            except ValueError:
                continue  # not an integer string: left out rather than sent wrong
            if number in _INT64:
                numbers.append(number)
        return numbers
    return list(values)


def find_json(conn: Connection, query: Query) -> list[dict[str, dict[str, Any]]]:
    """The matches of ``query``, each a DICOM JSON object keyed by tag (``0020000D``);
    an empty attribute has its ``vr`` and no ``Value``."""
    columns = [(keyword, f"{tag_for_keyword(keyword):08X}", attribute_vr(keyword))
               for keyword in query.return_keys]
    answers = []
    for values in find_values(conn, query):
        answer: dict[str, dict[str, Any]] = {}
        for keyword, tag, vr in columns:
            value = values[keyword]
            element: dict[str, Any] = {"vr": vr}
            if value is not None:
                converted = json_value(vr, value)
                if converted:
                    element["Value"] = converted
            answer[tag] = element
        answers.append(answer)
    return answers
