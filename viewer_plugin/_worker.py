"""Run a function on a worker thread and deliver its answer on the UI thread.

The function gets a :class:`~viewer_plugin.client.CancelToken` and a ``progress``
callable; its result (or its :class:`~viewer_plugin.errors.PrecedentError`)
reaches the callbacks given to :meth:`TaskRunner.start`, on the runner's thread.
Each task is tagged with the generation of the query it belongs to, so callers
can drop answers to superseded queries.

Lifetimes, which is what makes this safe to close at any moment:

- the threads belong to one process-wide pool, not to a widget, so deleting a
  panel never waits on, or deletes, a thread that is still in a request;
- a task talks to the UI thread only through a queued signal to its runner's
  ``_deliver`` slot; Qt drops queued calls to a runner that has been deleted, so a
  late answer for a closed panel simply goes nowhere;
- the signal-carrying object is created, used and deleted on the worker thread;
- the worker never touches a widget: the function works on plain data.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal, Slot

from viewer_plugin.client import CancelToken
from viewer_plugin.errors import NodeFailed, PrecedentError

__all__ = ["Task", "TaskRunner"]

log = logging.getLogger(__name__)

TaskFunction = Callable[[CancelToken, Callable[[Any], None]], Any]

_DONE, _FAILED, _PROGRESS, _FINISHED = "done", "failed", "progress", "finished"
_pool: QThreadPool | None = None
_pool_lock = threading.Lock()
_ids = itertools.count(1)


def _thread_pool() -> QThreadPool:
    """The viewer's own pool (not the global one: hosts may use that for their work)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = QThreadPool()
            _pool.setMaxThreadCount(6)
            _pool.setExpiryTimeout(10_000)
        return _pool


class _Signals(QObject):
    delivered = Signal(int, str, object)  # task id, kind, payload


@dataclass(slots=True)
class _Callbacks:
    generation: int
    done: Callable[[int, Any], None]
    failed: Callable[[int, PrecedentError], None]
    progress: Callable[[int, Any], None] | None


class Task:
    """One background call (plain data; runs on a pool thread)."""

    def __init__(self, task_id: int, generation: int, fn: TaskFunction,
                 runner: TaskRunner) -> None:
        self.id = task_id
        self.generation = generation
        self.cancel_token = CancelToken()
        self._fn = fn
        self._runner = runner
        self._live = runner._live

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def run(self) -> None:
        try:
            signals = _Signals()  # lives on this worker thread
            try:
                signals.delivered.connect(self._runner._deliver,
                                          Qt.ConnectionType.QueuedConnection)
            except RuntimeError:  # the runner (its panel) is gone: nobody to answer
                return
            emit = signals.delivered.emit
            try:
                result = self._fn(self.cancel_token, lambda part: emit(self.id, _PROGRESS, part))
            except PrecedentError as exc:  # QueryCancelled included
                emit(self.id, _FAILED, exc)
            except Exception as exc:  # the worker's boundary: a bug must not kill the thread
                log.exception("event=viewer_task_failed task=%d", self.id)
                emit(self.id, _FAILED, NodeFailed(
                    f"The viewer failed unexpectedly: {type(exc).__name__}: {exc}", status=0))
            else:
                emit(self.id, _DONE, result)
            emit(self.id, _FINISHED, None)
            del signals
        finally:
            self._runner = None  # type: ignore[assignment]
            self._live.release()


class _LiveCount:
    """How many of a runner's tasks are still on a pool thread (thread-safe)."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._n += 1

    def release(self) -> None:
        with self._lock:
            self._n -= 1

    @property
    def value(self) -> int:
        with self._lock:
            return self._n


class TaskRunner(QObject):
    """Starts tasks on the viewer's pool and hands their answers to callbacks."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._callbacks: dict[int, _Callbacks] = {}
        self._tasks: dict[int, Task] = {}
        self._live = _LiveCount()

    def start(
        self,
        generation: int,
        fn: TaskFunction,
        *,
        done: Callable[[int, Any], None],
        failed: Callable[[int, PrecedentError], None],
        progress: Callable[[int, Any], None] | None = None,
    ) -> Task:
        task = Task(next(_ids), generation, fn, self)
        self._callbacks[task.id] = _Callbacks(generation, done, failed, progress)
        self._tasks[task.id] = task
        self._live.acquire()
        _thread_pool().start(task.run)
        return task

    @Slot(int, str, object)
    def _deliver(self, task_id: int, kind: str, payload: object) -> None:
        callbacks = self._callbacks.get(task_id)
        if callbacks is None:
            return
        if kind == _FINISHED:
            self._callbacks.pop(task_id, None)
            self._tasks.pop(task_id, None)
        elif kind == _DONE:
            callbacks.done(callbacks.generation, payload)
        elif kind == _FAILED:
            assert isinstance(payload, PrecedentError)
            callbacks.failed(callbacks.generation, payload)
        elif kind == _PROGRESS and callbacks.progress is not None:
            callbacks.progress(callbacks.generation, payload)

    @property
    def active(self) -> int:
        """Tasks still running on a pool thread."""
        return self._live.value

    def cancel_all(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel everything, forget the callbacks, and wait (bounded) for the threads.

        Returns ``True`` when no task of this runner is left on a thread.
        """
        self.cancel_all()
        self._callbacks.clear()
        self._tasks.clear()
        deadline = time.monotonic() + timeout_ms / 1000.0
        while self._live.value > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._live.value == 0
