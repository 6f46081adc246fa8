"""``precedent worker``: the indexer alone, beside ``precedent serve`` processes on a
shared PostgreSQL catalog (:mod:`node.cluster.worker_process`)."""

from __future__ import annotations

import argparse
import logging

from node.commands._common import Subcommands, add_location_flags, settings_from
from node.settings import catalog_notes, location_notes

__all__ = ["register", "run"]

log = logging.getLogger("node.cli")


def register(commands: Subcommands) -> None:
    worker = commands.add_parser(
        "worker", help="run the indexer alone (PostgreSQL catalog)",
        description="Index what the serve processes receive, on a catalog shared through "
                    "[catalog] url = \"postgresql://…\" (the storage root shared too: "
                    "--data-dir). Runs until SIGINT or SIGTERM; its claims go back.")
    add_location_flags(worker)
    worker.add_argument("--model", help="open_clip model reference (hf-hub:…, local-dir:…)")
    worker.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from node.cluster.worker_process import WorkerProcess

    settings = settings_from(args, announce=False)
    logging.basicConfig(level=settings.log_level.value,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    process = WorkerProcess(settings)  # refuses on SQLite, before anything starts
    log.info("%s", location_notes(settings))
    for note in catalog_notes(settings):
        log.info("%s", note)
    process.run_until_signalled()
    return 0
