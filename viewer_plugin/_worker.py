"""Run a function on a worker thread and deliver its answer on the UI thread.

The function gets a :class:`~viewer_plugin.connection.CancelToken` and a ``progress``
callable; its result (or its :class:`~viewer_plugin.errors.PrecedentError`) reaches
the callbacks given to :meth:`TaskRunner.start`, on the runner's (UI) thread, as a
:class:`TaskAnswer`. Each task carries the generation of the query it belongs to,
and a plain ``context`` value, so callers can drop answers to superseded queries and
know what an answer is for without closures.

A plugin is a guest: it leaves its host's garbage collector alone. Python's cyclic
collector runs on whichever thread allocates when a threshold is crossed — a worker
here, a server thread in the host — and if it frees a Qt object caught in a reference
cycle, that object is destroyed off the UI thread and Qt crashes. So no Qt object may
ever sit in a Python reference cycle, and this module is shaped to make that hold:

- the function is plain code on plain data: :meth:`TaskRunner.start` refuses one whose
  closure, bound ``self`` or :func:`functools.partial` arguments hold a ``QObject``;
- callbacks are bound methods, held weakly (``WeakMethod``): the runner never holds
  its owner, so no cycle runs owner → runner → callback → owner;
- an answer crosses threads as plain data, and an error without its traceback (a
  traceback keeps the worker's frames alive, and with them what they referenced);
- a worker thread never touches a runner (which its panel may be deleting at that very
  moment): it emits on the viewer's mailbox, one ``QObject`` that lives on the UI
  thread as long as the application, and the mailbox hands each answer to the runner
  of the task, there, if that runner still exists;
- the runner must have a parent (Qt owns it);
- the threads belong to the viewer's own pool, not to a widget, so deleting a panel
  never waits on, or deletes, a thread that is still in a request.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, Qt, QThreadPool, Signal, Slot

from viewer_plugin.connection import CancelToken
from viewer_plugin.errors import NodeFailed, PrecedentError

__all__ = ["Task", "TaskAnswer", "TaskRunner"]

log = logging.getLogger(__name__)

TaskFunction = Callable[[CancelToken, Callable[[Any], None]], Any]
Callback = Callable[["TaskAnswer"], None]

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


@dataclass(frozen=True, slots=True)
class TaskAnswer:
    """What a callback receives: the task's generation and context, and the value
    (the result, the error, or one progress item)."""

    generation: int
    context: Any
    value: Any


def _qt_object_in(fn: Callable[..., Any]) -> str:
    """The type name of a QObject the function would carry to the worker, else ``""``."""
    held: list[Any] = []
    while isinstance(fn, functools.partial):
        held += [*fn.args, *fn.keywords.values()]
        fn = fn.func
    held.append(getattr(fn, "__self__", None))
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            held.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    found = next((o for o in held if isinstance(o, QObject)), None)
    return type(found).__name__ if found is not None else ""


def _weak_callback(callback: Callback | None, name: str) -> weakref.WeakMethod[Any] | None:
    if callback is None:
        return None
    if not hasattr(callback, "__self__"):
        raise TypeError(f"{name}: must be a bound method (held weakly), not "
                        f"{type(callback).__name__}; a closure would keep its widget alive")
    return weakref.WeakMethod(callback)


def _without_tracebacks(error: BaseException) -> BaseException:
    """The error, and those it was raised from, with their tracebacks dropped."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return error


class _Mailbox(QObject):
    """Where workers post answers; lives on the UI thread as long as the application."""

    delivered = Signal(int, str, object)  # task id, kind, payload

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.runners: dict[int, weakref.ref[TaskRunner]] = {}  # touched on the UI thread only
        self.delivered.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @Slot(int, str, object)
    def _deliver(self, task_id: int, kind: str, payload: object) -> None:
        ref = self.runners.pop(task_id, None) if kind == _FINISHED else self.runners.get(task_id)
        runner = ref() if ref is not None else None
        if runner is not None and shiboken6.isValid(runner):
            runner._receive(task_id, kind, payload)


_mailbox: _Mailbox | None = None


def _the_mailbox() -> _Mailbox:
    """The viewer's mailbox (created on the UI thread, on first use, under the app)."""
    global _mailbox
    if _mailbox is None or not shiboken6.isValid(_mailbox):
        app = QCoreApplication.instance()
        if app is None:
            raise RuntimeError("the viewer's tasks need a QApplication")
        _mailbox = _Mailbox(app)
    return _mailbox


class _Outbox:
    """The worker's side of a task: posts to the mailbox."""

    def __init__(self, task_id: int, mailbox: _Mailbox) -> None:
        self._id = task_id
        self._mailbox = mailbox

    def send(self, kind: str, payload: object) -> None:
        self._mailbox.delivered.emit(self._id, kind, payload)

    def progress(self, part: object) -> None:
        self.send(_PROGRESS, part)


@dataclass(slots=True)
class _Route:
    generation: int
    context: Any
    done: weakref.WeakMethod[Any] | None
    failed: weakref.WeakMethod[Any] | None
    progress: weakref.WeakMethod[Any] | None


class Task:
    """One background call (plain data; runs on a pool thread)."""

    def __init__(self, task_id: int, generation: int, fn: TaskFunction,
                 runner: TaskRunner, mailbox: _Mailbox) -> None:
        self.id = task_id
        self.generation = generation
        self.cancel_token = CancelToken()
        self._fn = fn
        self._outbox = _Outbox(task_id, mailbox)
        self._live = runner._live

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def run(self) -> None:
        outbox = self._outbox
        try:
            result = self._fn(self.cancel_token, outbox.progress)
        except PrecedentError as exc:  # QueryCancelled included
            outbox.send(_FAILED, _without_tracebacks(exc))
        except Exception as exc:  # the worker's boundary: a bug must not kill the thread
            log.exception("event=viewer_task_failed task=%d", self.id)
            outbox.send(_FAILED, NodeFailed(
                f"The viewer failed unexpectedly: {type(exc).__name__}: {exc}", status=0))
        else:
            outbox.send(_DONE, result)
            del result
        finally:
            outbox.send(_FINISHED, None)
            self._fn = _finished
            self._live.release()


def _finished(_cancel: CancelToken, _progress: Callable[[Any], None]) -> None:
    """What a task's function becomes once it has run (drops the real one's data)."""


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
    """Starts tasks on the viewer's pool and hands their answers to bound methods."""

    def __init__(self, parent: QObject) -> None:
        if not isinstance(parent, QObject):
            raise TypeError("parent: a TaskRunner belongs to a QObject (Qt owns it)")
        super().__init__(parent)
        self._routes: dict[int, _Route] = {}
        self._tasks: dict[int, Task] = {}
        self._live = _LiveCount()

    def start(
        self,
        fn: TaskFunction,
        *,
        done: Callback,
        failed: Callback | None = None,
        progress: Callback | None = None,
        generation: int = 0,
        context: Any = None,
    ) -> Task:
        """Run ``fn(cancel, progress)`` on the pool; ``done``/``failed``/``progress`` get
        :class:`TaskAnswer` on this runner's thread. Callbacks must be bound methods."""
        holder = _qt_object_in(fn)
        if holder:
            raise TypeError(f"fn: carries a {holder} to the worker thread; pass plain data")
        if isinstance(context, QObject):
            raise TypeError("context: must be plain data, not a QObject")
        mailbox = _the_mailbox()
        task = Task(next(_ids), generation, fn, self, mailbox)
        mailbox.runners[task.id] = weakref.ref(self)
        self._routes[task.id] = _Route(generation, context, _weak_callback(done, "done"),
                                       _weak_callback(failed, "failed"),
                                       _weak_callback(progress, "progress"))
        self._tasks[task.id] = task
        self._live.acquire()
        _thread_pool().start(task.run)
        return task

    def _receive(self, task_id: int, kind: str, payload: object) -> None:
        """An answer of one of this runner's tasks (from the mailbox, on the UI thread)."""
        route = self._routes.get(task_id)
        if route is None:
            return
        if kind == _FINISHED:
            self._routes.pop(task_id, None)
            self._tasks.pop(task_id, None)
            return
        ref = {_DONE: route.done, _FAILED: route.failed, _PROGRESS: route.progress}.get(kind)
        callback = ref() if ref is not None else None
        if callback is not None:
            callback(TaskAnswer(route.generation, route.context, payload))

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
        self._routes.clear()
        self._tasks.clear()
        deadline = time.monotonic() + timeout_ms / 1000.0
        while self._live.value > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._live.value == 0
