"""Python's cyclic garbage collector, run on the UI thread only.

The collector runs on whichever thread happens to allocate when a threshold is
crossed: a worker thread in a request, or a server thread in the same process. If it
then frees a Qt widget caught in a reference cycle, the widget is destroyed off the
UI thread and Qt crashes (a segmentation fault, seen in the test suite). So while a
panel lives, automatic collection is off and a timer on the UI thread collects
instead, with the collector's own thresholds (the pattern long used by PyQt apps).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer

__all__ = ["install_ui_thread_gc", "uninstall_ui_thread_gc"]

_INTERVAL_MS = 500
_collector: _UiThreadCollector | None = None


class _UiThreadCollector(QObject):
    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._check)
        self._timer.start(_INTERVAL_MS)

    def _check(self) -> None:
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                gc.collect(generation)
                return


def install_ui_thread_gc() -> None:
    """Turn automatic collection off and collect from the UI thread (idempotent).

    Call on the UI thread once a ``QCoreApplication`` exists; the panel does it.
    """
    global _collector
    app = QCoreApplication.instance()
    if _collector is not None or app is None:
        return
    _collector = _UiThreadCollector(app)
    gc.disable()


def uninstall_ui_thread_gc() -> None:
    """Collect once on this (UI) thread and give collection back to Python."""
    global _collector
    if _collector is None:
        return
    _collector.deleteLater()
    _collector._timer.stop()
    _collector = None
    gc.collect()
    gc.enable()
