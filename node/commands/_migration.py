"""Moving the data folder's SQLite catalog into PostgreSQL (``precedent catalog
migrate``; docs/postgres.md §9), without the command line around it.

Each package that owns tables names them and their keys, parents first
(``node.storage.TABLES``, ``indexer.TABLES``, ``node.backfill.TABLES``); the target's
tables are made by their owners' ``ensure_schema``; :func:`database.copy_table` copies
each, resumably. Before anything is copied the target is checked (holding other data
and no progress of this source: refused) and the source's orphans are found (PostgreSQL
enforces ``REFERENCES``: they are reported, or left out when asked). After, each table's
rows are counted on both sides, and :func:`seed_index` puts the saved index files where
a serving process on the shared catalog looks for them.

The caller holds the data folder (no node writes the source meanwhile).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import database
from node.errors import PrecedentError

__all__ = [
    "MigrationError", "MigrationProgress", "OrphansFound", "TableCount", "migrate",
    "owned_tables", "seed_index", "unlisted_tables",
]


class MigrationError(PrecedentError):
    """The catalog cannot be migrated (or not finished); the message says what to do."""


class OrphansFound(MigrationError):
    """The source holds rows whose parent is missing; ``lines`` says, one per table."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclasses.dataclass(frozen=True)
class TableCount:
    """A table's rows in the source (less any orphans left out) and in the target."""

    table: str
    source: int
    target: int
    left_out: int = 0

    @property
    def equal(self) -> bool:
        return self.source - self.left_out == self.target


class MigrationProgress(Protocol):
    """What is shown while the tables are copied (a progress bar per table)."""

    def table(self, name: str, total: int, done: int) -> None:
        """``name``'s copy begins, or resumes with ``done`` rows copied before: ``total``
        rows in the source."""

    def advance(self, name: str, rows: int) -> None:
        """``rows`` more of ``name`` were committed in the target (an exception here
        stops the migration between two batches)."""


def owned_tables() -> list[tuple[str, tuple[str, ...]]]:
    """Every table a package owns, with its key, parents first (one listed that its
    owner's schema does not make, in this build, is passed over)."""
    import indexer
    import node.backfill
    import node.storage

    return [*node.storage.TABLES, *indexer.TABLES, *node.backfill.TABLES]


def _ensure_schemas(conn: database.Connection) -> None:
    """The owners' tables (``node.storage``'s makes the indexer's too)."""
    from node.backfill._schema import ensure_schema as ensure_backfill_schema
    from node.storage._schema import ensure_schema

    ensure_schema(conn)
    ensure_backfill_schema(conn)


#: tables the owners' ``ensure_schema`` writes rows into in a new catalog (the data
#: migrations it need not run): a target that was only opened (a command reading its
#: settings there) still counts as empty; their rows are replaced by the source's
_SCHEMA_WRITTEN = frozenset({"catalog_migrations"})


def _tables_with_rows(dst: database.Connection) -> list[str]:
    names = [str(r[0]) for r in dst.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema ="
        " current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name")]
    return [n for n in names if n != database.PROGRESS_TABLE and n not in _SCHEMA_WRITTEN
            and dst.execute(f'SELECT EXISTS (SELECT 1 FROM "{n}") AS held').fetchone()[0]]


def _check_target(dst: database.Connection, source: str, shown: str) -> None:
    """Refuse a target that holds data of its own, or another source's migration."""
    progress = database.progress_of(dst)
    others = sorted({p.source for p in progress.values() if p.source != source})
    if others:
        raise MigrationError(
            f"the target {shown} holds a migration from {others[0]}, not from {source}: "
            "give an empty database, or the data folder that migration came from")
    if not progress:
        held = _tables_with_rows(dst)
        if held:
            raise MigrationError(
                f"the target {shown} already holds data ({', '.join(held[:5])}"
                f"{', …' if len(held) > 5 else ''}) and no migration of this catalog: "
                "migrate into a new, empty database (CREATE DATABASE … TEMPLATE template0 "
                "LC_COLLATE 'C' LC_CTYPE 'C')")


def _orphan_lines(found: Sequence[database.Orphan], source: Path) -> list[str]:
    lines = []
    for o in found:
        if not o.parent:
            what, fix = f"have no {o.column} (their key)", f"give them one in {source}"
        else:
            what = (f"are under rows of {o.parent} that are left out" if o.under
                    else f"name a {o.column} missing from {o.parent}")
            fix = f"restore the missing {o.parent} rows in {source}"
        lines.append(f"{o.table}: {len(o.rowids)} rows {what}; PostgreSQL refuses them: "
                     f"run again with --drop-orphans to leave them out, or {fix}")
    return lines


def migrate(
    source: Path, target: str, *, batch: int = 5000, drop_orphans: bool = False,
    progress: MigrationProgress | None = None,
) -> list[TableCount]:
    """Copy the SQLite catalog at ``source`` into the PostgreSQL catalog at ``target``
    (resuming a migration that stopped), and return each table's counts.

    Raises :class:`MigrationError` (one line) when it cannot begin or its counts differ,
    :class:`OrphansFound` when the source holds rows whose parent is missing and
    ``drop_orphans`` is false, :class:`database.CopyError` when a table cannot be copied,
    and the driver's error when the server is lost meanwhile (run it again to resume).
    """
    shown = database.redact(target)
    if database.dialect_for(target) is not database.DialectValues.POSTGRESQL:
        raise MigrationError(f"--to {shown}: give the PostgreSQL catalog as "
                             "postgresql://user:password@host:port/database")
    if not source.is_file():
        raise MigrationError(f"no catalog at {source}: nothing to migrate (give the data "
                             "folder of the node whose catalog moves: --data-dir)")
    where = os.fspath(source.resolve())
    try:
        dst = database.connect(target)
    except database.CatalogUnavailable as exc:
        raise MigrationError(str(exc)) from None
    src = database.connect(source)
    try:
        if not database.lock_target(dst):
            raise MigrationError(f"another `precedent catalog migrate` is copying into "
                                 f"{shown}: let it finish (or stop it) first")
        _ensure_schemas(src)  # an older catalog is brought up to this version first
        present = set(database.source_tables(src))
        tables = [(name, key) for name, key in owned_tables() if name in present]
        names = [name for name, _ in tables]
        found = [o for name, key in tables if (o := database.keyless(src, name, key))]
        found += database.orphans(src, names)
        if found and not drop_orphans:
            raise OrphansFound(_orphan_lines(found, source))
        _check_target(dst, where, shown)
        earlier = database.progress_of(dst)
        if earlier and all(p.finished_at is not None for p in earlier.values()):
            raise MigrationError(f"the catalog {source} was migrated to {shown} already: "
                                 "nothing to do (set [catalog] url to it and start the node)")
        database.ensure_progress(dst, where, names)  # before the schema writes any row
        _ensure_schemas(dst)
        skip: dict[str, set[int]] = {}
        for o in found:
            skip.setdefault(o.table, set()).update(o.rowids)
        before = database.progress_of(dst)
        for name, key in tables:
            if progress is not None:
                progress.table(name, database.count_rows(src, name), before[name].copied)
            advance = None if progress is None else functools.partial(progress.advance, name)
            database.copy_table(src, dst, name, key, batch, source=where,
                                skip=skip.get(name, ()), on_batch=advance)
        counts = [TableCount(n, database.count_rows(src, n), database.count_rows(dst, n),
                             len(skip.get(n, ()))) for n in names]
    finally:
        src.close()
        dst.close()
    unequal = [c for c in counts if not c.equal]
    if unequal:
        raise MigrationError(
            "the counts differ after the copy (" + ", ".join(
                f"{c.table}: {c.source - c.left_out} in the source, {c.target} in the target"
                for c in unequal) + "): was the target written meanwhile? Migrate into a "
            "new, empty database")
    return counts


def seed_index(embedded: Path, folder: Path) -> list[str]:
    """Put the embedded set-up's saved index files (``embedded``: ``data_dir/index``)
    into ``folder``, the index folder a serving process keeps on the shared catalog, when
    it holds none; returns the files placed (hard links, or copies across file systems).

    They are valid there: the vectors kept their keys, and the generation a sidecar
    names reads, on PostgreSQL, as a change-log horizon below every transaction (the
    process loads them and applies the log from its start; were the log pruned past it,
    it would rebuild them from the vectors, never embed again). Each sidecar is placed
    after its index file, as :mod:`indexer.index` saves them."""
    if folder == embedded or any(folder.glob("*.usearch")):
        return []
    placed: list[str] = []
    for index_file in sorted(embedded.glob("*.usearch")):
        sidecar = index_file.with_suffix(".json")
        if not sidecar.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for path in (index_file, sidecar):
            try:
                os.link(path, folder / path.name)
            except OSError:
                shutil.copy2(path, folder / path.name)
            placed.append(path.name)
    return placed


def unlisted_tables(source: Path) -> list[str]:
    """The source's tables no package of this version owns (they are not copied)."""
    src = database.connect(source)
    try:
        owned = {name for name, _ in owned_tables()}
        return [t for t in database.source_tables(src) if t not in owned]
    finally:
        src.close()
