"""With a panel alive, Python's cyclic collector runs on the UI thread only."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

from PySide6.QtCore import QSettings


class _Cycle:
    def __init__(self) -> None:
        self.me = self
        self.collected_on: list[str] = []


def test_cycles_are_collected_on_the_ui_thread(qtbot: Any, tmp_path: Any) -> None:
    from viewer_plugin.panel import FindSimilarPanel

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    panel = FindSimilarPanel(settings=settings)
    qtbot.addWidget(panel)
    assert not gc.isenabled()  # no collection on whatever thread allocates

    threads: list[str] = []

    def note(_: Any) -> None:
        threads.append(threading.current_thread().name)

    for _ in range(50):
        cycle = _Cycle()
        weakref.finalize(cycle, note, None)
        del cycle
    # allocate a lot on another thread: it must not collect there
    worker = threading.Thread(target=lambda: [[_Cycle() for _ in range(2000)]], name="worker")
    worker.start()
    worker.join()
    assert "worker" not in threads
    for _ in range(3000):
        _Cycle()
    qtbot.waitUntil(lambda: len(threads) >= 50, timeout=5000)
    assert set(threads) == {threading.main_thread().name}
