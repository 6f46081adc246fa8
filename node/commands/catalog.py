"""``precedent catalog migrate --to postgresql://…``: the data folder's SQLite catalog
moved into PostgreSQL, vectors included (no re-embedding: the usearch files in the data
folder stay valid), resumably, with a progress bar per table.

The node must be down (the command holds the data folder while it copies); run it
again after an interruption and it resumes where it stopped. The copy itself is
:mod:`node.commands._migration`.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from node.commands._common import (
    Subcommands,
    add_location_flags,
    note,
    progress,
    settings_from,
    use_cli_logging,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    group = commands.add_parser("catalog", help="the catalog: move it to PostgreSQL")
    group.set_defaults(run=run)
    actions = group.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "migrate", help="copy the data folder's SQLite catalog into PostgreSQL",
        description="Copy the data folder's catalog.sqlite (studies, queue, vectors, "
                    "reports, AE configuration, backfill plans) into an empty PostgreSQL "
                    "database, keeping every key (the index needs no rebuild, nothing is "
                    "embedded again). Stop the node first. Interrupted, the same command "
                    "resumes. Then set [catalog] url to the database and start the node.")
    add_location_flags(p)
    p.add_argument("--to", required=True, metavar="URL",
                   help="the PostgreSQL database: postgresql://user:password@host:port/db")
    p.add_argument("--batch", type=int, default=5000,
                   help="rows per transaction (default 5000)")
    p.add_argument("--drop-orphans", action="store_true",
                   help="leave out rows whose parent row is missing (PostgreSQL refuses "
                        "them; they are listed first)")


class _Bars:
    """One progress bar per table."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._tasks: dict[str, TaskID] = {}

    def table(self, name: str, total: int, done: int) -> None:
        self._tasks[name] = self._bar.add_task(name, total=total, completed=done)

    def advance(self, name: str, rows: int) -> None:
        self._bar.advance(self._tasks[name], rows)

    def finish(self) -> None:
        for task in self._tasks.values():
            self._bar.update(task, completed=self._bar.tasks[task].total or 0)


def run(args: argparse.Namespace) -> int:
    import database
    from node.commands import _migration
    from node.data_folder import DataFolderLock, Owner, OwnerRoleValues, current_owner, prepare
    from node.errors import DataFolderBusy

    use_cli_logging()
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    try:  # the settings may name a catalog URL already (read for the AE title and port)
        settings = settings_from(args)
    except database.CatalogUnavailable as exc:
        raise _migration.MigrationError(str(exc)) from None
    data_dir = settings.node.data_dir
    owner = current_owner(data_dir)
    if owner is not None:
        raise DataFolderBusy(f"the data folder {data_dir} is held by {owner.describe()}: "
                             "stop it first (its catalog must not change while it is copied)",
                             owner=owner)
    prepare(data_dir)
    me = Owner(pid=os.getpid(), role=OwnerRoleValues.COMMAND,
               command="precedent catalog migrate")
    shown = database.redact(args.to)
    with DataFolderLock.acquire(data_dir, me):
        for table in (_migration.unlisted_tables(settings.db_path)
                      if settings.db_path.is_file() else ()):
            note(f"precedent: the table {table} belongs to no package of this version: "
                 "not copied")
        try:
            with progress() as bar:
                bars = _Bars(bar)
                counts = _migration.migrate(settings.db_path, args.to, batch=args.batch,
                                            drop_orphans=args.drop_orphans, progress=bars)
                bars.finish()
        except _migration.OrphansFound as exc:
            for line in exc.lines:
                note(f"precedent: {line}")
            return 2
        except database.CopyError as exc:
            raise _migration.MigrationError(
                f"{exc}; fix it and run the same command again: it resumes") from None
        except database.DatabaseError as exc:
            reason = database.redact(" ".join(str(exc).split()))
            raise _migration.MigrationError(
                f"the copy into {shown} stopped ({reason}); run the same command again: "
                "it resumes where it stopped") from None
        except KeyboardInterrupt:
            note("precedent: interrupted; run the same command again: it resumes where it "
                 "stopped")
            return 130
        # the index files, for this machine's node on the shared catalog (its folder)
        from node.runtime import index_dir

        moved = settings.model_copy(update={"catalog": settings.catalog.model_copy(
            update={"url": args.to})})
        folder = index_dir(moved)
        if _migration.seed_index(data_dir / "index", folder):
            note(f"precedent: the index files are in {folder} too, for the node on this "
                 f"machine (HTTP port {settings.http.port}); a node elsewhere makes its own "
                 "from the copied vectors (nothing is embedded again)")
    width = max(len(c.table) for c in counts)
    for c in counts:
        left = f" ({c.left_out} orphans left out)" if c.left_out else ""
        print(f"{c.table:<{width}}  {c.target:>10}{left}")
    note(f"precedent: the catalog is in {shown}, every count equal. Next: set [catalog] "
         f"url = \"{shown}\" (or PRECEDENT_CATALOG__URL) and start the node; the files and "
         f"the index stay in {data_dir}, and {settings.db_path.name} is no longer read "
         "(keep it until you are satisfied)")
    return 0
