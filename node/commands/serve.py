"""``precedent serve``: run the node (DIMSE, REST, the indexer worker) until stopped."""

from __future__ import annotations

import argparse
import logging

from node.commands._common import Subcommands, add_location_flags, settings_from
from node.settings import catalog_notes

__all__ = ["register", "run"]

log = logging.getLogger("node.cli")


def register(commands: Subcommands) -> None:
    serve = commands.add_parser("serve", help="run the node (DIMSE, REST, indexer)")
    add_location_flags(serve)
    serve.add_argument("--ae-title")
    serve.add_argument("--host", help="address to listen on (DIMSE and HTTP)")
    serve.add_argument("--dimse-port", type=int)
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--model", help="open_clip model reference (hf-hub:…, local-dir:…)")
    serve.add_argument("--allow-any-source", action="store_true", default=None,
                       help="accept any calling AE title (try-outs only)")
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from node.supervisor import Node

    settings = settings_from(args)
    logging.basicConfig(level=settings.log_level.value,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for note in catalog_notes(settings):
        log.info("%s", note)
    Node(settings).serve_forever()
    return 0
