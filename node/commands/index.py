"""``precedent index``: the embedding index's state, a rebuild (the way to change the
model) and the import of folders of DICOM files (an archive backfill)."""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.commands._common import (
    Subcommands,
    add_location_flags,
    console,
    progress,
    settings_from,
)
from node.settings import Settings

if TYPE_CHECKING:
    from indexer.embedder import Embedder
    from indexer.index import IndexSet

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    group = commands.add_parser("index", help="the embedding index")
    group.set_defaults(run=run)
    index = group.add_subparsers(dest="action", required=True)
    p = index.add_parser("status")
    add_location_flags(p)
    p.add_argument("--json", action="store_true")
    p = index.add_parser("rebuild", help="re-embed everything stored (the way to change "
                         "the model)")
    add_location_flags(p)
    p.add_argument("--model", help="the model to re-embed with (default: [model] name)")
    p = index.add_parser("import", help="store and index folders of DICOM files")
    add_location_flags(p)
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--model")
    p.add_argument("--no-index", action="store_true", help="store and queue only")


def _index_status(settings: Settings) -> dict[str, Any]:
    from indexer import queue
    from indexer.index import model_identity, vector_counts
    from node.storage import connect

    conn = connect(settings.db_path)
    try:
        counts = queue.counts(conn).to_dict()
        model = model_identity(conn)
        vectors = vector_counts(conn)
    finally:
        conn.close()
    return {"model_identity": model,
            "vectors": {level.value: n for level, n in vectors.items()},
            **counts}


def _print_index_status(data: dict[str, Any]) -> None:
    print(f"model identity: {data['model_identity'] or '(none yet)'}")
    print("vectors: " + ", ".join(f"{k} {v}" for k, v in data["vectors"].items()))
    print("queue: " + ", ".join(f"{k} {v}" for k, v in data["by_state"].items()))
    for title, key in (("failed", "failed_reasons"), ("skipped", "skipped_reasons")):
        for reason, count in data.get(key, {}).items():
            print(f"  {title}: {count} × {reason}")


def _drain(settings: Settings, embedder: Embedder, index_set: IndexSet) -> None:
    """Run the indexer worker here until the queue has nothing pending."""
    from indexer import queue
    from indexer.worker import Worker
    from node.storage import connect

    w = settings.worker
    worker = Worker(db_path=settings.db_path, data_dir=settings.node.data_dir,
                    embedder=embedder, index_set=index_set, batch_size=w.batch_size,
                    decode_processes=w.decode_processes, max_attempts=w.max_attempts,
                    poll_interval_s=w.poll_interval_s)
    conn = connect(settings.db_path)
    queue.reset_in_progress(conn, max_attempts=w.max_attempts)
    todo = queue.counts(conn).pending
    with progress() as bar:
        task = bar.add_task("indexing", total=todo)
        while True:
            n = worker.run_once()
            if n == 0:
                if queue.counts(conn).pending == 0:
                    break
                threading.Event().wait(w.poll_interval_s)  # items waiting for a retry
            bar.advance(task, n)
    index_set.save()
    conn.close()


def _walk(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            for root, _, names in os.walk(path):
                for name in sorted(names):
                    yield Path(root) / name
        else:
            raise ValueError(f"{path} is neither a file nor a folder")


def _import(settings: Settings, paths: list[Path]) -> Counter[str]:
    """Store every DICOM file under ``paths`` through the one ingest path."""
    from node.errors import IngestError
    from node.supervisor import build_services

    services = build_services(settings)
    files = list(_walk(paths))
    outcomes: Counter[str] = Counter()
    with progress() as bar:
        task = bar.add_task("importing", total=len(files))
        for path in files:
            try:
                stored = services.ingest.store(path.read_bytes(), source="IMPORT")
                outcomes[stored.outcome.value] += 1
            except IngestError as exc:
                outcomes[f"skipped: {str(exc).split(':')[0]}"] += 1
            except OSError as exc:
                outcomes[f"skipped: unreadable ({exc.strerror})"] += 1
            bar.advance(task)
    return outcomes


def run(args: argparse.Namespace) -> int:
    from node.runtime import load_model, open_index

    settings = settings_from(args)
    if args.action == "status":
        data = _index_status(settings)
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            _print_index_status(data)
        return 0
    if args.action == "import":
        outcomes = _import(settings, args.paths)
        for what, count in sorted(outcomes.items()):
            print(f"{count:8d}  {what}")
        if args.no_index:
            return 0
    embedder = load_model(settings)
    if args.action == "rebuild":
        # a rebuild re-embeds everything: the way to change the model
        index_set = open_index(settings)
        requeued = index_set.switch_model(embedder.identity, embedder.dim)
        console.print(f"re-embedding {requeued} instances with {embedder.identity}")
    else:
        index_set = open_index(settings, embedder)
    _drain(settings, embedder, index_set)
    _print_index_status(_index_status(settings))
    return 0
