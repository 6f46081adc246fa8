"""``precedent eval``: retrieval quality (precision@k, recall@k, mAP) on a labelled set."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.commands._common import Subcommands, add_location_flags, settings_from

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    ev = commands.add_parser("eval", help="retrieval quality on a labelled set")
    add_location_flags(ev)
    ev.add_argument("--labels", type=Path, required=True)
    ev.add_argument("--k", type=int, default=10)
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from indexer.evaluate import evaluate as run_evaluation
    from node.runtime import open_index

    # the stored vectors are all it needs: no model is loaded
    index_set = open_index(settings_from(args))
    result = run_evaluation(index_set, args.labels, k=args.k)
    print(result.format_table())
    return 0
