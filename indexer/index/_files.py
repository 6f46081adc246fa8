"""The usearch HNSW indexes in memory and on disk: ``index/<level>.usearch`` and its
sidecar ``index/<level>.json``.

Each file is saved atomically (temporary file, fsync, rename), then its sidecar, which
names the model identity, the catalog generation (on PostgreSQL: the change log horizon,
:mod:`~indexer.index._log`), the dtype, the dimension and the count it was saved at. A
file whose sidecar disagrees with the catalog (or that cannot be read) is stale:
:func:`load` answers None and the caller rebuilds it with :func:`build`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from database import Connection
from indexer._enums import to_member
from indexer._levels import LevelValues
from indexer.index import vectors

__all__ = ["DTypeValues", "HnswSettings", "build", "load", "save"]

log = logging.getLogger(__name__)


class DTypeValues(str, enum.Enum):
    """Scalar types the indexes may store (usearch names)."""

    F16 = "f16"
    F32 = "f32"
    BF16 = "bf16"
    I8 = "i8"


@dataclasses.dataclass(frozen=True)
class HnswSettings:
    """How every level's HNSW index is built (cosine metric, one vector per key)."""

    dtype: DTypeValues = DTypeValues.F16
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", to_member(DTypeValues, self.dtype, name="dtype"))
        for arg in ("connectivity", "expansion_add", "expansion_search"):
            value = getattr(self, arg)
            if value < 1:
                raise ValueError(f"{arg} must be at least 1, got {value}")

    def new_index(self, dim: int) -> Any:
        """An empty index of dimension ``dim``."""
        from usearch.index import Index

        return Index(
            ndim=dim,
            metric="cos",
            dtype=self.dtype.value,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
            multi=False,
        )


def _paths(index_dir: Path, level: LevelValues) -> tuple[Path, Path]:
    return index_dir / f"{level.value}.usearch", index_dir / f"{level.value}.json"


def _expected(identity: str | None, dtype: DTypeValues, dim: int | None) -> dict[str, Any]:
    return {"model_id": identity, "dtype": dtype.value, "dim": dim}


def load(
    index_dir: Path,
    level: LevelValues,
    hnsw: HnswSettings,
    *,
    identity: str,
    dim: int,
    fresh: Callable[[int], bool],
) -> tuple[Any, int] | None:
    """The saved index of ``level`` and the generation it was saved at, if it is of this
    model and ``fresh(generation)`` (SQLite: the catalog's; PostgreSQL: not older than
    the change log reaches), else None (stale, missing or unreadable)."""
    path, sidecar = _paths(index_dir, level)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        generation = int(meta["generation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    expected = _expected(identity, hnsw.dtype, dim)
    if any(meta.get(k) != v for k, v in expected.items()) or not fresh(generation):
        log.info("index %s is stale (%s vs %s): rebuilding", level.value, meta, expected)
        return None
    index = hnsw.new_index(dim)
    try:
        index.load(os.fspath(path))
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("index %s unreadable (%s): rebuilding", level.value, exc)
        return None
    if len(index) != meta.get("count"):
        return None
    return index, generation


def build(conn: Connection, level: LevelValues, hnsw: HnswSettings, dim: int) -> Any:
    """A new index of ``level`` holding every vector the table has at that level (read
    as a stream, never all at once)."""
    index = hnsw.new_index(dim)
    for keys, matrix in vectors.scan(conn, level):
        index.add(keys, matrix)
    return index


def save(
    index_dir: Path,
    level: LevelValues,
    index: Any,
    hnsw: HnswSettings,
    *,
    identity: str | None,
    dim: int | None,
    generation: int,
) -> None:
    """Save one index atomically (temporary file, fsync, rename), then its sidecar."""
    path, sidecar = _paths(index_dir, level)
    tmp = path.with_suffix(".usearch.tmp")
    index.save(os.fspath(tmp))
    _fsync(tmp)
    os.replace(tmp, path)
    meta = {
        **_expected(identity, hnsw.dtype, dim),
        "generation": generation,
        "count": len(index),
        "saved_at": time.time(),
    }
    tmp_meta = sidecar.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
    _fsync(tmp_meta)
    os.replace(tmp_meta, sidecar)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
