"""The packages write ``?`` for a parameter, whatever the dialect; psycopg wants ``%s``.

:func:`to_pyformat` rewrites a statement for psycopg: each ``?`` in code (not in a
literal, an identifier or a comment) becomes ``%s``, and every ``%`` anywhere becomes
``%%`` (psycopg reads ``%`` in the whole text, literals included). SQLite's other
parameter styles (``?NNN``, ``:name``, ``@name``, ``$name``) are not used by the
packages and are refused, so that a statement never means one thing on one dialect and
another on the other. Translations are cached: the packages' statements are constants.
"""

from __future__ import annotations

import functools
import re

from database._lexer import SegmentValues, segments

__all__ = ["UnsupportedPlaceholder", "to_pyformat"]

_NUMBERED = re.compile(r"\?\d")
_NAMED = re.compile(r"(?<![:\w]):[A-Za-z_]\w*|(?<!\w)@[A-Za-z_]\w*")


class UnsupportedPlaceholder(ValueError):
    """A statement uses a parameter style other than ``?``."""


@functools.lru_cache(maxsize=2048)
def to_pyformat(sql: str) -> str:
    """``sql`` with ``?`` as ``%s`` and ``%`` as ``%%``, for psycopg."""
    out: list[str] = []
    for kind, text in segments(sql):
        if kind is SegmentValues.CODE:
            if _NUMBERED.search(text) or _NAMED.search(text):
                raise UnsupportedPlaceholder(
                    f"only ? parameters are supported, not those in: {sql.strip()[:200]}"
                )
            out.append(text.replace("%", "%%").replace("?", "%s"))
        else:
            out.append(text.replace("%", "%%"))
    return "".join(out)
