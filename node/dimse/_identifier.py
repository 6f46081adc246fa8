"""A C-FIND/C-MOVE/C-GET identifier (PS3.4 C.4) as the catalog query's matching values
and return keys."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from node.storage.query import CONSTANT_KEYS

__all__ = ["filters_from_identifier"]


def filters_from_identifier(identifier: Dataset) -> tuple[dict[str, str], list[str]]:
    """The identifier as (matching values, return keys); sequences and the keys answered
    with a constant (QueryRetrieveLevel, RetrieveAETitle, …) are not matched."""
    filters: dict[str, str] = {}
    keys: list[str] = []
    for element in identifier:
        keyword = element.keyword
        if not keyword or element.VR == "SQ" or keyword in CONSTANT_KEYS:
            continue
        keys.append(keyword)
        value = element.value
        if value is None:
            text = ""
        elif isinstance(value, MultiValue | list):
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)
        filters[keyword] = text
    return filters, keys
