"""Run a function on a ``QThreadPool`` thread and deliver its answer to the UI thread.

The function gets a :class:`~viewer_plugin.client.CancelToken` and a ``progress``
callable; its result (or its :class:`~viewer_plugin.errors.PrecedentError`)
comes back through Qt signals, queued onto the receiver's thread. Each task is
tagged with the generation of the query it belongs to, so the receiver can drop
answers to superseded queries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal

from viewer_plugin.client import CancelToken
from viewer_plugin.errors import NodeFailed, PrecedentError

__all__ = ["Task", "TaskRunner"]

log = logging.getLogger(__name__)

TaskFunction = Callable[[CancelToken, Callable[[Any], None]], Any]


class _Signals(QObject):
    done = Signal(int, object)  # generation, result
    failed = Signal(int, object)  # generation, PrecedentError
    progress = Signal(int, object)  # generation, partial result
    finished = Signal()  # after done/failed, always


class Task:
    """One background call. The pool runs :meth:`run` (wrapped in a C++-owned
    ``QRunnable``); ``signals`` belong to the runner, on the UI thread."""

    def __init__(self, generation: int, fn: TaskFunction, signals: _Signals) -> None:
        self.generation = generation
        self.cancel_token = CancelToken()
        self.signals = signals
        self._fn = fn

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def run(self) -> None:
        generation, signals = self.generation, self.signals
        try:
            result = self._fn(self.cancel_token,
                              lambda partial: signals.progress.emit(generation, partial))
        except PrecedentError as exc:  # QueryCancelled included
            signals.failed.emit(generation, exc)
        except Exception as exc:  # the worker's boundary: a bug must not kill the pool thread
            log.exception("event=viewer_task_failed generation=%d", generation)
            signals.failed.emit(generation, NodeFailed(
                f"The viewer failed unexpectedly: {type(exc).__name__}: {exc}", status=0))
        else:
            signals.done.emit(generation, result)
        signals.finished.emit()


class TaskRunner(QObject):
    """Starts tasks on its own pool and keeps them alive until they finish."""

    def __init__(self, parent: QObject | None = None, *, max_threads: int = 4) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._running: set[Task] = set()

    def start(
        self,
        generation: int,
        fn: TaskFunction,
        *,
        done: Callable[[int, Any], None],
        failed: Callable[[int, PrecedentError], None],
        progress: Callable[[int, Any], None] | None = None,
    ) -> Task:
        # the runner (UI thread) owns the signals, so they are never deleted from a pool
        # thread; the pool owns the QRunnable wrapping ``task.run`` and deletes it itself
        signals = _Signals(self)
        task = Task(generation, fn, signals)
        signals.done.connect(done)
        signals.failed.connect(failed)
        if progress is not None:
            signals.progress.connect(progress)

        def finished() -> None:
            self._running.discard(task)
            signals.deleteLater()

        signals.finished.connect(finished)
        self._running.add(task)
        self.pool.start(task.run)
        return task

    @property
    def active(self) -> int:
        return len(self._running)

    def cancel_all(self) -> None:
        for task in list(self._running):
            task.cancel()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Cancel everything and wait (bounded) for the threads to return."""
        self.cancel_all()
        self.pool.waitForDone(timeout_ms)
