"""The ``precedent`` command: the parser, its command groups, and one-line errors.

Each command group is a module of :mod:`node.commands` with ``register(commands)``;
:data:`GROUPS` lists them, one line each. Every command reads its settings the same way
(:func:`node.commands._common.settings_from`): defaults < ``--config`` file < the AE
title and port set over REST (kept in the catalog) < ``PRECEDENT_*`` environment <
flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from database import CatalogUnavailable, DatabaseError
from indexer.errors import IndexerError
from node.commands import (
    ae,
    backfill,
    catalog,
    evaluate,
    imports,
    index,
    model,
    reports,
    serve,
    status,
    viewer,
    worker,
)
from node.errors import PrecedentError

__all__ = ["GROUPS", "main"]

log = logging.getLogger("node.cli")

#: the command groups, in the order ``precedent --help`` lists them
GROUPS = (serve, worker, status, ae, index, imports, backfill, reports, catalog, evaluate,
          model, viewer)

DESCRIPTION = """\
Precedent: a DICOM node beside the PACS that finds similar past cases.

It receives studies (DIMSE C-STORE, DICOMweb STOW-RS), indexes their images with an
embedding model, and answers "find similar cases" over a DICOMweb extension.

Every command finds the settings file and data folder the way `serve` does (--config,
PRECEDENT_CONFIG, ./precedent.toml, /etc/precedent/node.toml; --data-dir,
PRECEDENT_NODE__DATA_DIR, the file's [node] data_dir, ~/.local/share/precedent) and
says which it uses. Changes go through the running node when it is up.
`precedent COMMAND --help` says more about each.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="precedent", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands")
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (PrecedentError, IndexerError, ValueError, CatalogUnavailable) as exc:
        print(f"precedent: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:  # the catalog's server failed mid-command
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"precedent: the catalog failed ({type(exc).__name__}: {first}); check that "
              "its server is up and [catalog] url, then run the command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("precedent: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
