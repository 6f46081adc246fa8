"""``precedent eval``: retrieval quality (precision@k, recall@k, mAP@k) on a labelled
set of the studies the node holds. It reads the stored vectors (no model is loaded) and
writes nothing into the data folder: the saved indexes are copied aside first, so it
runs as well beside a running node."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from node.commands._common import (
    Subcommands,
    add_location_flags,
    require_catalog,
    settings_from,
)

__all__ = ["register", "run"]

LABELS_HELP = """\
The labels file is CSV with a header row and the columns StudyInstanceUID and labels;
labels holds the study's findings separated by | (an empty cell: known, unlabelled).
Other columns are ignored. Example:

  StudyInstanceUID,labels
  1.2.840.113619.2.55.3.1234,pneumothorax
  1.2.840.113619.2.55.3.5678,pneumothorax|effusion

Each labelled study with a vector is a query at study level; its own patient is left
out of its results; a result is relevant when it shares a label with the query.
precision@k = relevant results / k, recall@k = relevant results / relevant studies,
mAP@k = mean average precision at k.
"""


def register(commands: Subcommands) -> None:
    ev = commands.add_parser("eval", help="retrieval quality on a labelled set",
                             description=LABELS_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add_location_flags(ev)
    ev.add_argument("--labels", type=Path, required=True,
                    help="CSV file: StudyInstanceUID,labels (labels separated by |)")
    ev.add_argument("--k", type=int, default=10,
                    help="how many similar studies each query looks at (default 10)")
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from indexer.evaluate import evaluate as run_evaluation
    from indexer.index import IndexSet
    from node.runtime import index_dir

    settings = settings_from(args)
    catalog = require_catalog(settings)
    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}")
    ix = settings.index
    with tempfile.TemporaryDirectory(prefix="precedent-eval-") as aside:
        saved = index_dir(settings)  # this process' own on a shared catalog
        if saved.is_dir():
            shutil.copytree(saved, aside, dirs_exist_ok=True)
        index_set = IndexSet.open(catalog=catalog, index_dir=Path(aside), dtype=ix.dtype,
                                  connectivity=ix.connectivity,
                                  expansion_add=ix.expansion_add,
                                  expansion_search=ix.expansion_search)
        result = run_evaluation(index_set, args.labels, k=args.k)
        index_set.close()
    print(result.format_table())
    return 0
