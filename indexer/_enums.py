"""Arguments that take one of an enum's values, as the member or as its string: converted
once, at the entry, with a message naming the argument and what it allows."""

from __future__ import annotations

import enum
from typing import TypeVar

__all__ = ["to_member"]

E = TypeVar("E", bound=enum.Enum)


def to_member(enum_type: type[E], value: E | str, *, name: str) -> E:
    """``value`` as a member of ``enum_type``; ``ValueError`` naming ``name`` otherwise."""
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None
