"""``precedent index``: the embedding index's state, a rebuild (the way to change the
model) and the import of folders of DICOM files (an archive backfill).

``import`` and ``rebuild`` go through the running node when it owns the data folder
(it stores, its one worker indexes, its own rebuild switches the model), and are done
here with the folder's lock held when it is down; without ``--model`` they use the
configured model (``[model]``), and a model that cannot load fails in one line.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.commands._common import (
    Subcommands,
    add_location_flags,
    data_folder_writer,
    note,
    progress,
    require_catalog,
    settings_from,
    use_cli_logging,
)
from node.errors import DataFolderBusy
from node.settings import Settings

if TYPE_CHECKING:
    from indexer.embedder import Embedder
    from indexer.index import IndexSet
    from node.admin_client import AdminClient

__all__ = ["register", "run"]

_LOCAL_DIR = "local-dir:"


def register(commands: Subcommands) -> None:
    group = commands.add_parser("index", help="the embedding index: status, rebuild, import")
    group.set_defaults(run=run)
    index = group.add_subparsers(dest="action", required=True)
    p = index.add_parser("status", help="vectors, queue and the model the index holds")
    add_location_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = index.add_parser("rebuild", help="re-embed everything stored (the way to change "
                         "the model); the running node does it itself")
    add_location_flags(p)
    p.add_argument("--model", help="the model to re-embed with, an open_clip reference "
                   "(local-dir:PATH, hf-hub:…; default: the configured [model])")
    p = index.add_parser("import", help="store and index folders of DICOM files")
    add_location_flags(p)
    p.add_argument("paths", nargs="+", type=Path, help="files or folders (walked)")
    p.add_argument("--model", help="the model to index with when the node is down "
                   "(default: the configured [model])")
    p.add_argument("--no-index", action="store_true", help="store and queue only")


def _index_status(settings: Settings) -> dict[str, Any]:
    from indexer import queue
    from indexer.index import model_identity, vector_counts
    from node.storage import connect

    conn = connect(require_catalog(settings))
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


def _print_outcomes(outcomes: dict[str, int]) -> None:
    for what, count in sorted(outcomes.items()):
        print(f"{count:8d}  {what}")


# -- through the running node ---------------------------------------------------------


def _follow(node: AdminClient, started: dict[str, Any]) -> dict[str, Any]:
    """Follow the node's operation with one bar per stage; its last state."""
    with progress() as bar:
        tasks: dict[str, Any] = {}

        def show(op: dict[str, Any]) -> None:
            stage = str(op["stage"])
            if stage not in tasks:
                for earlier in tasks.values():  # that stage has ended
                    bar.update(earlier, completed=bar.tasks[earlier].total or 0)
                tasks[stage] = bar.add_task(stage, total=op["total"] or None)
            bar.update(tasks[stage], total=op["total"] or None, completed=op["done"])

        last = node.follow(started, show)
    if last["state"] == "failed":
        from node.errors import NodeAdminError

        raise NodeAdminError(f"the node's {last['kind']} failed: {last['error']}")
    return last


def _through_node(node: AdminClient, args: argparse.Namespace) -> int:
    if args.action == "import":
        paths = [str(p.expanduser().absolute()) for p in args.paths]
        for p in args.paths:
            if not p.exists():
                raise ValueError(f"{p} is neither a file nor a folder")
        last = _follow(node, node.request("POST", "/admin/index/import",
                                          json={"paths": paths, "index": not args.no_index}))
        _print_outcomes(last["outcomes"])
    else:
        model = args.model
        if model and model.startswith(_LOCAL_DIR):  # the node resolves from elsewhere
            model = _LOCAL_DIR + str(Path(model[len(_LOCAL_DIR):]).expanduser().absolute())
        last = _follow(node, node.request("POST", "/admin/index/rebuild",
                                          json={"model": model}))
        note(f"rebuilt by the node: {last['done']} instances re-embedded")
    if last.get("detail"):
        note(f"precedent: {last['detail']}")
    return 0


# -- here, with the data folder's lock held --------------------------------------------


def _drain(settings: Settings, embedder: Embedder, index_set: IndexSet) -> None:
    """Run the indexer worker here until the queue has nothing pending."""
    from indexer import queue
    from indexer.worker import Worker
    from node.runtime import volume_sampling
    from node.storage import connect

    w = settings.worker
    worker = Worker(catalog=settings.catalog_target, data_dir=settings.node.data_dir,
                    embedder=embedder, index_set=index_set,
                    sampling=volume_sampling(settings), batch_size=w.batch_size,
                    decode_processes=w.decode_processes, max_attempts=w.max_attempts,
                    poll_interval_s=w.poll_interval_s)
    conn = connect(settings.catalog_target)
    try:
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
    finally:
        worker.close()
        conn.close()


def _import_here(settings: Settings, paths: list[Path]) -> Counter[str]:
    """Store every DICOM file under ``paths`` through the one ingest path."""
    from node.operations import import_files, walk_files
    from node.supervisor import build_services

    services = build_services(settings)
    files = list(walk_files(paths))
    outcomes: Counter[str] = Counter()
    with progress() as bar:
        task = bar.add_task("storing", total=len(files))

        def on_file(outcome: str, _: str | None) -> None:
            outcomes[outcome] += 1
            bar.advance(task)

        import_files(services.ingest, files, on_file=on_file)
    return outcomes


def _here(settings: Settings, args: argparse.Namespace) -> int:
    from node.runtime import load_model, open_index

    if args.action == "import":
        files = list(args.paths)
        for p in files:
            if not p.exists():
                raise ValueError(f"{p} is neither a file nor a folder")
        _print_outcomes(dict(_import_here(settings, files)))
        if args.no_index:
            return 0
    embedder = load_model(settings, on_progress=note)
    if args.action == "rebuild":
        # a rebuild re-embeds everything: the way to change the model
        index_set = open_index(settings)
        requeued = index_set.switch_model(embedder.identity, embedder.dim)
        note(f"re-embedding {requeued} instances with {embedder.identity}")
    else:
        index_set = open_index(settings, embedder)
    _drain(settings, embedder, index_set)
    if args.action == "rebuild" and args.model:
        note(f"precedent: the index now holds {embedder.identity}; set [model] name = "
                      f"\"{args.model}\" (or [model] path) in the node's settings so that it "
                      "starts with this model")
    return 0


def _refuse_while_others_run(settings: Settings) -> None:
    """A rebuild switches the model of the whole cluster's index: on a shared catalog it
    is refused while any process other than this machine's node (which does it) is
    alive, naming them."""
    import socket

    from node.cluster.registry import list_processes
    from node.data_folder import current_owner
    from node.storage import connect

    owner = current_owner(settings.node.data_dir)
    conn = connect(settings.catalog_target)
    try:
        alive = [p for p in list_processes(conn) if p.alive]
    finally:
        conn.close()
    here = socket.gethostname()
    others = [p for p in alive
              if not (owner is not None and p.host == here and p.pid == owner.pid)]
    if others:
        names = ", ".join(f"{p.kind} pid {p.pid} on {p.host}" for p in others)
        raise DataFolderBusy(
            f"index rebuild changes the model of every process on this catalog: stop the "
            f"others first ({names}), then rebuild through one node and start them with "
            "the new [model]")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.action == "status":
        data = _index_status(settings)
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            _print_index_status(data)
        return 0
    use_cli_logging()
    if args.action == "rebuild":
        require_catalog(settings)  # nothing stored: nothing to rebuild
        if settings.shared_catalog:
            _refuse_while_others_run(settings)
    with data_folder_writer(settings, f"index {args.action}") as node:
        code = _through_node(node, args) if node is not None else _here(settings, args)
    _print_index_status(_index_status(settings))
    return code
