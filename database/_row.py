"""Rows read from PostgreSQL that behave like :class:`sqlite3.Row`: by position
(``row[0]``, slices, unpacking, ``tuple(row)``), by column name (``row["path"]``, ASCII
case-insensitive as in sqlite3), ``row.keys()``, and ``dict(row)``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import psycopg
from psycopg.rows import RowMaker

__all__ = ["Row", "row_factory"]


class Row:
    """One result row; the column names and their lookup are shared by the rows of one
    result."""

    __slots__ = ("_index", "_names", "_values")

    def __init__(self, names: tuple[str, ...], index: dict[str, int],
                 values: Sequence[Any]) -> None:
        self._names = names
        self._index = index
        self._values = tuple(values)

    @overload
    def __getitem__(self, key: int | str) -> Any: ...

    @overload
    def __getitem__(self, key: slice) -> tuple[Any, ...]: ...

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._index[key.lower()]]
            except KeyError:
                raise IndexError(f"no column named {key!r}") from None
        return self._values[key]

    def keys(self) -> list[str]:
        """The column names, in order (as :meth:`sqlite3.Row.keys`)."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._names == other._names and self._values == other._values
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._names, self._values))

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


def row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    """psycopg's row factory for :class:`Row` (the names are read once per result)."""
    description = cursor.description or []
    names = tuple(column.name for column in description)
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name.lower(), i)  # the first of equal names wins, as in sqlite3

    def make(values: Sequence[Any]) -> Row:
        return Row(names, index, values)

    return make
