"""Splitting SQL text into code and the parts no rewrite may touch: string literals
(``'…'`` with ``''``, ``E'…'`` with backslash escapes), quoted identifiers (``"…"``),
comments (``--`` to the end of the line, ``/* … */``, nested as PostgreSQL nests them)
and dollar-quoted bodies (``$tag$ … $tag$``).

The placeholder translation and the DDL translation rewrite only the code parts.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator

__all__ = ["SegmentValues", "UnterminatedSQL", "segments"]


class SegmentValues(enum.Enum):
    """What a piece of SQL text is."""

    CODE = "code"
    STRING = "string"
    IDENTIFIER = "identifier"
    COMMENT = "comment"
    DOLLAR = "dollar"


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_SPECIAL = re.compile(r"['\"$]|--|/\*")


class UnterminatedSQL(ValueError):
    """A literal, identifier, comment or dollar-quoted body is not closed."""


def segments(sql: str) -> Iterator[tuple[SegmentValues, str]]:
    """The pieces of ``sql`` in order; joined, they give ``sql`` back unchanged."""
    pos, code_start = 0, 0
    while True:
        found = _SPECIAL.search(sql, pos)
        if found is None:
            break
        start = found.start()
        token = found.group()
        if token == "$":
            tag = _DOLLAR_TAG.match(sql, start)
            # ``$1`` is a parameter and ``a$b`` part of a name, not a dollar quote
            if tag is None or (start > 0 and _is_name_char(sql[start - 1])):
                pos = start + 1
                continue
            end = sql.find(tag.group(), tag.end())
            if end < 0:
                raise UnterminatedSQL(f"unterminated dollar-quoted body {tag.group()}")
            kind, stop = SegmentValues.DOLLAR, end + len(tag.group())
        elif token == "'":
            escaped = start > 0 and sql[start - 1] in "eE" and not (
                start > 1 and _is_name_char(sql[start - 2]))
            if escaped:
                start -= 1  # the E belongs to the literal
            kind, stop = SegmentValues.STRING, _close_quote(sql, found.end(), "'", escaped)
        elif token == '"':
            kind, stop = SegmentValues.IDENTIFIER, _close_quote(sql, found.end(), '"', False)
        elif token == "--":
            newline = sql.find("\n", found.end())
            kind, stop = SegmentValues.COMMENT, len(sql) if newline < 0 else newline
        else:
            kind, stop = SegmentValues.COMMENT, _close_block_comment(sql, found.end())
        if start > code_start:
            yield SegmentValues.CODE, sql[code_start:start]
        yield kind, sql[start:stop]
        pos = code_start = stop
    if code_start < len(sql):
        yield SegmentValues.CODE, sql[code_start:]


def _is_name_char(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _close_quote(sql: str, pos: int, quote: str, backslash_escapes: bool) -> int:
    """The index just past the quote that closes a literal opened before ``pos``."""
    while pos < len(sql):
        char = sql[pos]
        if backslash_escapes and char == "\\":
            pos += 2
            continue
        if char == quote:
            if sql.startswith(quote, pos + 1):  # doubled: part of the text
                pos += 2
                continue
            return pos + 1
        pos += 1
    raise UnterminatedSQL(f"unterminated {quote}…{quote} in SQL")


def _close_block_comment(sql: str, pos: int) -> int:
    depth = 1
    while depth:
        opening, closing = sql.find("/*", pos), sql.find("*/", pos)
        if closing < 0:
            raise UnterminatedSQL("unterminated /* comment */ in SQL")
        if 0 <= opening < closing:
            depth, pos = depth + 1, opening + 2
        else:
            depth, pos = depth - 1, closing + 2
    return pos
