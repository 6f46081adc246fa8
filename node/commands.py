"""The administrative commands behind `precedent index …`, `precedent reports import`
and `precedent eval`: each works on the catalog directly, with a progress bar."""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from indexer import queue
from indexer.index import model_identity, vector_counts
from node.errors import IngestError
from node.runtime import load_model, open_index, volume_sampling
from node.settings import Settings
from node.storage import connect
from node.supervisor import build_services

if TYPE_CHECKING:
    from indexer.embedder import Embedder
    from indexer.index import IndexSet

__all__ = ["evaluate", "index", "reports_import"]

console = Console(stderr=True)


def _with_model(settings: Settings, args: argparse.Namespace) -> Settings:
    if getattr(args, "model", None):
        return settings.model_copy(
            update={"model": settings.model.model_copy(update={"name": args.model})})
    return settings


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def _index_status(settings: Settings) -> dict[str, Any]:
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
    for title, key in (("failed", "failed_reasons"), ("skipped", "skipped_reasons"),
                       ("not sampled", "not_sampled_reasons")):
        for reason, count in data.get(key, {}).items():
            print(f"  {title}: {count} × {reason}")


def _drain(settings: Settings, embedder: Embedder, index_set: IndexSet) -> None:
    """Run the indexer worker here until the queue has nothing pending."""
    from indexer.worker import Worker

    w = settings.worker
    worker = Worker(db_path=settings.db_path, data_dir=settings.node.data_dir,
                    embedder=embedder, index_set=index_set,
                    sampling=volume_sampling(settings), batch_size=w.batch_size,
                    decode_processes=w.decode_processes, max_attempts=w.max_attempts,
                    poll_interval_s=w.poll_interval_s)
    conn = connect(settings.db_path)
    queue.reset_in_progress(conn, max_attempts=w.max_attempts)
    todo = queue.counts(conn).pending
    with _progress() as progress:
        task = progress.add_task("indexing", total=todo)
        while True:
            n = worker.run_once()
            if n == 0:
                if queue.counts(conn).pending == 0:
                    break
                threading.Event().wait(w.poll_interval_s)  # items waiting for a retry
            progress.advance(task, n)
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
    services = build_services(settings)
    files = list(_walk(paths))
    outcomes: Counter[str] = Counter()
    with _progress() as progress:
        task = progress.add_task("importing", total=len(files))
        for path in files:
            try:
                stored = services.ingest.store(path.read_bytes(), source="IMPORT")
                outcomes[stored.outcome.value] += 1
            except IngestError as exc:
                outcomes[f"skipped: {str(exc).split(':')[0]}"] += 1
            except OSError as exc:
                outcomes[f"skipped: unreadable ({exc.strerror})"] += 1
            progress.advance(task)
    return outcomes


def index(args: argparse.Namespace, settings: Settings) -> int:
    settings = _with_model(settings, args)
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


def reports_import(args: argparse.Namespace, settings: Settings) -> int:
    from node.reporting import import_reports_csv

    conn = connect(settings.db_path)
    try:
        summary = import_reports_csv(conn, args.csv)
    finally:
        conn.close()
    print(summary)
    for line, key in summary.unmatched[:20]:
        print(f"  line {line}: no study on the node for {key}")
    for line, reason in summary.invalid[:20]:
        print(f"  line {line}: {reason}")
    return 0 if summary.matched or not summary.rows else 1


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.evaluate import evaluate as run_evaluation

    # the stored vectors are all it needs: no model is loaded
    index_set = open_index(settings)
    result = run_evaluation(index_set, args.labels, k=args.k)
    print(result.format_table())
    return 0
