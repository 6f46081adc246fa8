"""``precedent serve``: run the node (DIMSE, REST, the indexer worker) until stopped.

It takes the data folder's lock (one process owns a folder), binds every listener or
none, and logs which folder and settings file it uses and what is open to whom. A
start-up failure is one line naming the setting and its value, exit status 2.
"""

from __future__ import annotations

import argparse
import logging

from node.commands._common import Subcommands, add_location_flags, settings_from
from node.settings import catalog_notes, location_notes

__all__ = ["register", "run"]

log = logging.getLogger("node.cli")


def register(commands: Subcommands) -> None:
    serve = commands.add_parser(
        "serve", help="run the node (DIMSE, REST, indexer)",
        description="Run the node until SIGINT or SIGTERM. Flags override the settings "
                    "file and the environment.")
    add_location_flags(serve)
    serve.add_argument("--ae-title", help="the node's AE title ([node] ae_title)")
    serve.add_argument("--host", help="address to listen on, DIMSE and HTTP ([node] host, "
                       "[http] host; HTTP's default is 127.0.0.1, this machine only)")
    serve.add_argument("--dimse-port", type=int, help="[node] dimse_port (default 11112)")
    serve.add_argument("--http-port", type=int, help="[http] port (default 8080)")
    serve.add_argument("--model", help="open_clip model reference (hf-hub:…, local-dir:…)")
    serve.add_argument("--allow-any-source", action="store_true", default=None,
                       help="accept any calling AE title (try-outs only)")
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from node.supervisor import Node

    settings = settings_from(args, announce=False)
    logging.basicConfig(level=settings.log_level.value,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import pydicom.config

    # pydicom's warnings on invalid values quote the value (a name sent as a UID) at
    # WARNING; the node keeps what it receives as received, so it does not validate it
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    log.info("%s", location_notes(settings))
    for note in catalog_notes(settings):
        log.info("%s", note)
    Node(settings).serve_forever()
    return 0
