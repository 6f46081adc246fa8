"""A host that collects garbage hard, on a thread of its own, while the viewer works.

Run as ``python -m tests.viewer_plugin._gc_stress URL STUDY_UID [ROUNDS]`` (offscreen).
Each round builds the host window against the real node, opens the study, finds
similar cases (thumbnails, report), starts two more queries and closes the window
with them still in flight, then drops it. Meanwhile a "server" thread allocates
reference cycles and calls ``gc.collect()`` without pause, as a busy host does.

A plugin that leaves a Qt object in a Python reference cycle hands it to that thread's
collector, which destroys it off the UI thread: Qt then crashes (exit -11), or the
object is seen destroyed on the wrong thread. Exit 0 and ``OK`` when every window and
panel was destroyed at once, on the UI thread, and the host's collector settings
(enabled, thresholds) are what they were.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time
import weakref
from typing import Any

from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from viewer_plugin.host import build_window

UI = threading.main_thread().name
destroyed_on: list[str] = []


class _Cycle:
    def __init__(self) -> None:
        self.me = self
        self.payload = [0] * 16


def _note_destroyed(*_: object) -> None:
    destroyed_on.append(threading.current_thread().name)


def _churn(stop: threading.Event) -> None:
    while not stop.is_set():
        junk = [_Cycle() for _ in range(500)]
        del junk
        gc.collect()


def _wait_for(signal: Any, seconds: float = 60.0) -> None:
    loop = QEventLoop()
    fired: list[object] = []

    def done(*args: object) -> None:
        fired.append(args)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    signal.disconnect(done)
    if not fired:
        raise TimeoutError(f"no {signal} within {seconds} s")


def _pump(seconds: float) -> None:
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while app is not None and time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)


def _round(url: str, study: str, settings_path: str) -> weakref.ref[Any]:
    """One window's life; only a weak reference to it leaves this function."""
    window = build_window(url=url, settings=QSettings(settings_path,
                                                      QSettings.Format.IniFormat))
    for obj in (window, window.panel, window.dock, window.tabs):
        obj.destroyed.connect(_note_destroyed, Qt.ConnectionType.DirectConnection)
    window.show()
    window.open_study(study)
    _wait_for(window.study_opened)
    panel = window.panel
    panel.find_similar()
    _wait_for(panel.thumbnails_done)
    panel.find_similar()  # still in flight when the window goes
    panel.search_text("effusion")
    window.close()
    return weakref.ref(window)


def main(argv: list[str]) -> int:
    url, study = argv[0], argv[1]
    rounds = int(argv[2]) if len(argv) > 2 else 4
    app = QApplication.instance() or QApplication(["gc-stress"])
    assert app is not None
    before = (gc.isenabled(), gc.get_threshold())
    stop = threading.Event()
    server = threading.Thread(target=_churn, args=(stop,), name="host-server", daemon=True)
    server.start()
    folder = tempfile.mkdtemp()
    try:
        for i in range(rounds):
            ref = _round(url, study, f"{folder}/{i}.ini")
            if ref() is not None:
                print(f"round {i}: the window outlived its last reference (a reference cycle)")
                return 3
            _pump(0.3)
    finally:
        stop.set()
        server.join()
    _pump(0.3)
    wrong = [name for name in destroyed_on if name != UI]
    if wrong or len(destroyed_on) < 4 * rounds:
        print(f"Qt objects destroyed on {wrong or 'too few threads'}: {destroyed_on}")
        return 4
    if (gc.isenabled(), gc.get_threshold()) != before:
        print(f"the collector changed: {before} -> {(gc.isenabled(), gc.get_threshold())}")
        return 5
    print(f"OK {rounds} rounds, {len(destroyed_on)} objects destroyed on the UI thread")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    # skip interpreter finalization: PySide6 6.12 on Python 3.11 can abort there on its
    # own (its refcounts of None/True drift); the verdict is the code above
    os._exit(code)
