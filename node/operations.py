"""Administrative operations the running node performs itself, for its admin API: the
import of folders of DICOM files, the import of a labelled image collection
(:mod:`node.image_collections`) and the index rebuild (the way to change the model).

While the node owns its data folder, ``precedent index import`` and ``precedent index
rebuild`` ask it to do the work (``POST /admin/index/import``, ``POST
/admin/index/rebuild``) and follow the :class:`Operation` (``GET
/admin/operations/{id}``) with a progress bar: one writer, one indexer worker. When the
node is down the commands do the same work themselves, holding the folder's lock, with
the same :func:`import_files` (``precedent import collection``: ``POST
/admin/collections/import``, and :func:`~node.image_collections.importer.import_collection`).

One operation runs at a time; each runs in a thread of its own and honours the node's
stop event.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import IndexerError
from node.errors import DataFolderBusy, IngestError, NotFound, PrecedentError

if TYPE_CHECKING:
    from node.image_collections.importer import CollectionImport
    from node.runtime import Services
    from node.storage import Ingest

__all__ = [
    "Operation",
    "OperationKindValues",
    "OperationStateValues",
    "Operations",
    "RebuildRunner",
    "import_files",
    "walk_files",
]

#: how often an import looks at the queue while its instances are being indexed
_POLL_S = 0.2


class OperationKindValues(str, Enum):
    IMPORT = "import"
    REBUILD = "rebuild"
    COLLECTION = "collection"


class OperationStateValues(str, Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass
class Operation:
    """One operation's progress: ``done`` of ``total`` in its current ``stage``."""

    id: str
    kind: OperationKindValues
    state: OperationStateValues = OperationStateValues.RUNNING
    stage: str = "starting"
    total: int = 0
    done: int = 0
    #: for an import, how many files ended how (``stored``, ``skipped: …``)
    outcomes: Counter[str] = field(default_factory=Counter)
    #: why it failed (one line)
    error: str | None = None
    #: a closing remark (what to do next)
    detail: str | None = None
    #: what the operation made, once done (a collection import's summary)
    result: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, stage: str, total: int, done: int = 0) -> None:
        with self._lock:
            self.stage, self.total, self.done = stage, total, done

    def advance(self, done: int) -> None:
        with self._lock:
            self.done = done

    def record(self, outcome: str) -> None:
        """One more file done, and how it ended."""
        with self._lock:
            self.outcomes[outcome] += 1
            self.done += 1

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {"id": self.id, "kind": self.kind.value, "state": self.state.value,
                    "stage": self.stage, "total": self.total, "done": self.done,
                    "outcomes": dict(self.outcomes), "error": self.error,
                    "detail": self.detail, "result": self.result}


#: the node's rebuild: ``(model reference or None, operation) -> None``
RebuildRunner = Callable[[str | None, Operation], None]


def walk_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every file under ``paths`` (files as given, folders walked in name order)."""
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    yield Path(root) / name
        else:
            raise ValueError(f"{path} is neither a file nor a folder")


def import_files(ingest: Ingest, files: Iterable[Path], *,
                 on_file: Callable[[str, str | None], None],
                 stop: threading.Event | None = None) -> None:
    """Store each file through the one ingest path; ``on_file(outcome, sop_uid)`` after
    each (``stored``, ``duplicate_kept``, ``replaced`` or ``skipped: why``)."""
    for path in files:
        if stop is not None and stop.is_set():
            return
        try:
            stored = ingest.store(path.read_bytes(), source="IMPORT")
        except IngestError as exc:
            on_file(f"skipped: {str(exc).split(':')[0]}", None)
        except OSError as exc:
            on_file(f"skipped: unreadable ({exc.strerror})", None)
        else:
            on_file(stored.outcome.value, stored.sop_instance_uid)


class Operations:
    """The running node's operations, one at a time, each in a thread of its own."""

    def __init__(self, services: Services, stop: threading.Event, *,
                 rebuild: RebuildRunner) -> None:
        self._services = services
        self._stop = stop
        self._rebuild = rebuild
        self._lock = threading.Lock()
        self._all: dict[str, Operation] = {}
        self._running: Operation | None = None
        self._ids = itertools.count(1)

    def get(self, op_id: str) -> Operation:
        with self._lock:
            found = self._all.get(op_id)
        if found is None:
            raise NotFound(f"no operation {op_id!r} on this node (it forgets them at restart)")
        return found

    def _start(self, kind: OperationKindValues, work: Callable[[Operation], None]) -> Operation:
        with self._lock:
            running = self._running
            if running is not None and running.state is OperationStateValues.RUNNING:
                raise DataFolderBusy(f"the node is busy with {running.kind.value} operation "
                                     f"{running.id} ({running.stage}); wait for it to finish")
            op = Operation(id=str(next(self._ids)), kind=kind)
            self._all[op.id] = self._running = op

        def run() -> None:
            finished = False
            try:
                work(op)
                finished = True
            except (PrecedentError, IndexerError, OSError, ValueError) as exc:
                op.error = str(exc)
            finally:  # a bug propagates (logged by the thread) and fails the operation
                if not finished and op.error is None:
                    op.error = "the operation stopped on an internal error (see the node's log)"
                op.state = (OperationStateValues.FAILED if op.error
                            else OperationStateValues.DONE)

        threading.Thread(target=run, name=f"precedent-{kind.value}-{op.id}",
                         daemon=True).start()
        return op

    def start_import(self, paths: list[Path], *, index: bool) -> Operation:
        """Store the files under ``paths`` (on this machine, readable by the node), then,
        with ``index``, follow their indexing by the node's worker."""
        files = list(walk_files(paths))  # a missing path fails the request itself
        return self._start(OperationKindValues.IMPORT,
                           lambda op: self._import(op, files, index=index))

    def start_collection(self, opened: CollectionImport) -> Operation:
        """Import a labelled image collection (read and checked by the caller) as
        Secondary Captures with their reports."""
        return self._start(OperationKindValues.COLLECTION,
                           lambda op: self._collection(op, opened))

    def start_rebuild(self, model: str | None) -> Operation:
        """Re-embed everything (with ``model``, when given): the node's own rebuild."""
        return self._start(OperationKindValues.REBUILD, lambda op: self._rebuild(model, op))

    def _import(self, op: Operation, files: list[Path], *, index: bool) -> None:
        from indexer import queue

        stored: list[str] = []
        op.progress("storing", len(files))

        def on_file(outcome: str, sop_uid: str | None) -> None:
            op.record(outcome)
            if sop_uid is not None:
                stored.append(sop_uid)

        import_files(self._services.ingest, files, on_file=on_file, stop=self._stop)
        if not index:
            return
        conn = self._services.connections.get()
        op.progress("indexing", len(stored))
        while not self._stop.is_set():
            counts = queue.counts(conn, stored)
            op.advance(len(stored) - counts.waiting)
            if counts.waiting == 0:
                return
            model = self._services.model
            if model.status.value == "unavailable":
                op.detail = (f"stored; {counts.waiting} instances wait for the model "
                             f"({model.reason})")
                return
            self._stop.wait(_POLL_S)

    def _collection(self, op: Operation, opened: CollectionImport) -> None:
        from node.image_collections.importer import import_collection

        op.progress("storing", len(opened.found.items))
        summary = import_collection(
            self._services.ingest, self._services.connections.get(), opened,
            progress=lambda done, _total: op.advance(done), stop=self._stop)
        op.result = summary.as_json()
