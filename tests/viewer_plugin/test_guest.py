"""A plugin is a guest: the viewer leaves its host's garbage collector alone, and no Qt
object of it is ever left for the collector to free (on whatever thread it runs).

The regression this guards: a collection on a server thread of the same process freed
Qt widgets caught in reference cycles (window ↔ panel, worker callbacks holding the
panel) and segfaulted the suite. The fix was to break the cycles, not to switch the
host's collector off.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QLayout, QWidget

from tests._synthetic import ct_instance
from tests.viewer_plugin._scans import StoredScan
from tests.viewer_plugin.conftest import Host, SeededNode
from viewer_plugin._worker import TaskAnswer, TaskRunner
from viewer_plugin.host import build_window
from viewer_plugin.panel import FindSimilarPanel

WAIT_MS = 30_000


def _use_a_window(qtbot: Any, qsettings: Any, seeded_node: SeededNode,
                  study: str) -> dict[str, weakref.ref[Any]]:
    """Work a host window against the real node, close it; only weak references leave."""
    win = build_window(url=seeded_node.url, token=seeded_node.token, settings=qsettings)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.study_opened, timeout=WAIT_MS):
        win.open_study(study)
    panel = win.panel
    with (qtbot.waitSignal(panel.thumbnails_done, timeout=WAIT_MS),
          qtbot.waitSignal(panel.report_shown, timeout=WAIT_MS)):
        qtbot.mouseClick(panel.find_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        qtbot.mouseClick(panel.row_widget(0).thumbs_up, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(panel.kos_sent, timeout=WAIT_MS):
        qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(win.study_opened, timeout=WAIT_MS):
        qtbot.mouseClick(panel.row_widget(1).open_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(win.show_browser().browser.page_shown, timeout=WAIT_MS):
        win.show_browser().browser.search()
    panel.search_text("effusion")  # in flight when the window closes
    refs = {"window": win, "panel": panel, "results": panel.results, "row": panel.row_widget(0),
            "kos bar": panel.kos_bar, "browser": win.browser_dialog, "view": win.current_view(),
            "runner": panel.runner}
    weak = {name: weakref.ref(obj) for name, obj in refs.items()}
    win.close()
    return weak


def test_a_closed_viewer_is_freed_at_once_and_the_collector_is_untouched(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode,
        real_scans: tuple[StoredScan, ...]) -> None:
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    assert enabled  # the suite runs with Python's default collector
    weak = _use_a_window(qtbot, qsettings, seeded_node, real_scans[0].study_instance_uid)
    # no cycle holds any of them: the last reference went with the function, at once
    assert [name for name, ref in weak.items() if ref() is not None] == []
    assert gc.isenabled() == enabled and gc.get_threshold() == thresholds


def test_a_panel_alone_is_freed_at_once(qtbot: Any, qsettings: Any,
                                        seeded_node: SeededNode) -> None:
    host = Host(seeded_node.studies[0].study_instance_uid)
    panel = FindSimilarPanel(host=host, settings=qsettings)
    qtbot.addWidget(panel)
    panel.set_node(seeded_node.url, seeded_node.token)
    with qtbot.waitSignal(panel.thumbnails_done, timeout=WAIT_MS):
        panel.find_similar()
    ref = weakref.ref(panel)
    panel.close()
    del panel
    assert ref() is None
    assert gc.isenabled()


def test_a_host_collecting_on_its_own_thread_never_gets_a_viewer_object(
        seeded_node: SeededNode) -> None:
    """The segfault's regression test: windows built and dropped against the real node
    while another thread of the process allocates and collects without pause
    (``_gc_stress``; a crash is exit -11)."""
    study = seeded_node.studies[0].study_instance_uid
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.viewer_plugin._gc_stress", seeded_node.url, study, "4"],
        env=env, capture_output=True, text=True, timeout=280, check=False,
        cwd=Path(__file__).parents[2])
    assert done.returncode == 0, (f"exit {done.returncode} (-11 is a segfault): "
                                  f"{done.stdout[-1500:]} {done.stderr[-1500:]}")
    assert done.stdout.startswith("OK 4 rounds")


def test_no_layout_is_nested_in_another(qtbot: Any, qsettings: Any) -> None:
    """PySide6 releases the GIL half-way through destroying a layout nested in another
    (with widgets in it); a collection on another thread then crashes the process. The
    viewer puts every row on a container widget instead (``viewer_plugin._layout``)."""
    win = build_window(url="http://127.0.0.1:9", settings=qsettings)
    qtbot.addWidget(win)
    win.show()
    win.show_browser()
    win.add_study([ct_instance(study_uid="1.2.3", series_uid="1.2.3.1", patient_id="P1")],
                  from_node=False)
    roots: list[QWidget] = [win]
    if win.browser_dialog is not None:
        roots.append(win.browser_dialog)
    layouts = [layout for root in roots for layout in root.findChildren(QLayout)
               if shiboken6.createdByPython(layout)]  # Qt's own (a status bar's) are not ours
    assert len(layouts) > 20
    nested = [type(layout).__name__ for layout in layouts
              if any(isinstance(child, QLayout) for child in layout.children())]
    assert nested == []


class _Owner(QObject):
    def on_done(self, answer: TaskAnswer) -> None:
        pass


def _plain(x: int, _cancel: object, _progress: object) -> int:
    return x


def test_the_worker_refuses_what_would_tie_a_widget_to_a_thread(qtbot: Any) -> None:
    owner = _Owner()
    runner = TaskRunner(owner)
    with pytest.raises(TypeError, match="carries a _Owner"):
        runner.start(lambda cancel, progress: owner, done=owner.on_done)
    with pytest.raises(TypeError, match="carries a _Owner"):
        runner.start(partial(_plain, owner), done=owner.on_done)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bound method"):
        runner.start(partial(_plain, 1), done=lambda answer: None)
    with pytest.raises(TypeError, match="parent"):
        TaskRunner(None)  # type: ignore[arg-type]
    runner.start(partial(_plain, 1), done=owner.on_done)  # plain data: fine
    assert runner.shutdown(5000)
