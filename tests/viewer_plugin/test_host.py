"""The host viewer: local folders, window/level, scrolling, the docked panel, and a
screenshot of the whole window with the panel filled from the real node."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from tests._synthetic import ct_instance, write_files
from tests.viewer_plugin.conftest import SeededNode
from viewer_plugin._imaging import StudyImages, read_folder, window_to_uint8
from viewer_plugin.contract import ViewerHost, discover_panels, load_panel
from viewer_plugin.host import HostWindow, StudyView, build_window, main
from viewer_plugin.panel import FindSimilarPanel

WAIT_MS = 30_000


@pytest.fixture
def window(qtbot: Any, qsettings: Any) -> HostWindow:
    win = build_window(url="http://127.0.0.1:9", settings=qsettings)
    qtbot.addWidget(win)
    win.resize(1400, 860)
    win.show()
    return win


@pytest.fixture
def ct_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "local"
    folder.mkdir()
    for name in ("CT_small.dcm", "emri_small.dcm"):  # a CT slice and a 10-frame MR
        shutil.copy(str(get_testdata_file(name)), folder / name)
    (folder / "notes.txt").write_text("not DICOM")
    return folder


def test_the_panel_is_discovered_through_the_entry_point_group() -> None:
    assert "find_similar" in discover_panels()
    assert load_panel("find_similar") is FindSimilarPanel
    with pytest.raises(LookupError, match="no viewer panel 'nope'"):
        load_panel("nope")


def test_the_host_window_is_a_viewer_host(window: HostWindow) -> None:
    assert isinstance(window, ViewerHost)
    assert window.current_study() is None
    assert window.dock.widget() is window.panel


def test_a_local_folder_opens_with_its_series_and_frames(
        window: HostWindow, ct_folder: Path, qtbot: Any) -> None:
    view = window.open_folder(str(ct_folder))
    assert isinstance(view, StudyView)
    assert len(read_folder(ct_folder)) == 2
    # two studies' files in one folder: both series are listed, frames of the MR scroll
    assert view.series_list.count() == 2
    study = window.current_study()
    assert isinstance(study, list) and len(study) == 2  # local-only: the data sets
    mr = next(i for i, s in enumerate(view.images.series) if s.modality == "MR")
    view.series_list.setCurrentRow(mr)
    assert view.slider.maximum() == 9
    start = view.frame_index
    wheel = QWheelEvent(QPointF(50, 50), QPointF(50, 50), QPoint(0, 0), QPoint(0, -120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.canvas, wheel)
    assert view.frame_index == start + 1
    assert f"{start + 2}/10" == view.position_label.text()


def test_window_level_by_drag_and_by_preset(
        window: HostWindow, ct_folder: Path, qtbot: Any) -> None:
    view = window.open_folder(str(ct_folder))
    assert view is not None
    ct = next(i for i, s in enumerate(view.images.series) if s.modality == "CT")
    view.series_list.setCurrentRow(ct)
    center, width = view.center, view.width_
    canvas = view.canvas
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(canvas, QPoint(160, 130))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(160, 130))
    assert view.width_ > width and view.center > center
    view.preset_combo.setCurrentText("Lung")
    assert (view.center, view.width_) == (-600.0, 1500.0)
    assert "W 1500  L -600" in canvas.overlay


def test_windowing_follows_the_standard_and_monochrome1_inverts() -> None:
    arr = np.array([[-1000.0, 40.0, 1000.0]])
    assert window_to_uint8(arr, 40, 400).tolist() == [[0, 127, 255]]
    assert window_to_uint8(arr, 40, 400, invert=True).tolist() == [[255, 127, 0]]
    images = StudyImages([ct_instance(study_uid="1.2.3", series_uid="1.2.3.1",
                                      patient_id="P1")])
    frame = images.series[0].frames[0]
    assert images.default_window(frame) == (40.0, 400.0)
    assert images.pixels(frame).min() < 0  # rescale applied: Hounsfield units


def test_main_rejects_a_bad_url_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="url"):
        main(["--url", "ftp://nowhere"])
    with pytest.raises(SystemExit):
        main(["--study", "1.2", "--folder", "/tmp"])


# ----------------------------------------------------------------- real node


def test_a_local_only_study_is_searched_by_uploading_an_image(
        qtbot: Any, qsettings: Any, tmp_path: Path, seeded_node: SeededNode) -> None:
    win = build_window(url=seeded_node.url, token=seeded_node.token, settings=qsettings)
    qtbot.addWidget(win)
    win.show()
    files = write_files([ct_instance(study_uid="1.2.826.0.1.3680043.99.1",
                                     series_uid="1.2.826.0.1.3680043.99.1.1",
                                     patient_id="LOCAL1", finding="pneumothorax")],
                        tmp_path / "local-only")
    view = win.open_folder(str(files[0].parent))
    assert view is not None and not view.from_node
    qtbot.wait(200)  # the node is asked whether it has the study (it does not)
    assert not isinstance(win.current_study(), str)
    with qtbot.waitSignal(win.panel.results_ready, timeout=WAIT_MS):
        qtbot.mouseClick(win.panel.find_button, Qt.MouseButton.LeftButton)
    assert win.panel.case_uids
    assert set(win.panel.case_uids) <= seeded_node.stored_study_uids()


def test_screenshot_of_the_viewer_with_the_panel_filled(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode, screenshots: Path) -> None:
    win = build_window(url=seeded_node.url, token=seeded_node.token, settings=qsettings)
    qtbot.addWidget(win)
    win.resize(1400, 860)
    win.show()
    study = seeded_node.studies[0].study_instance_uid
    outcome: list[str] = []
    win.study_opened.connect(lambda uid: outcome.append(f"opened {uid}"))
    win.open_failed.connect(lambda text: outcome.append(f"failed: {text}"))
    win.open_study(study)  # QIDO-RS + WADO-RS from the node
    qtbot.waitUntil(lambda: bool(outcome), timeout=WAIT_MS)
    assert outcome == [f"opened {study}"]
    assert win.current_study() == study
    view = win.current_view()
    assert view is not None and view.canvas.image is not None
    panel = win.panel
    with (qtbot.waitSignal(panel.thumbnails_done, timeout=WAIT_MS),
          qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS)):
        qtbot.mouseClick(panel.find_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(panel.report_view.toPlainText().strip()), timeout=WAIT_MS)

    # opening a result shows that case in a second tab
    other = panel.model.cases[0].study_instance_uid
    with qtbot.waitSignal(win.study_opened, timeout=WAIT_MS) as opened:
        qtbot.mouseClick(panel.row_widget(0).open_button, Qt.MouseButton.LeftButton)
    assert opened.args[0] == other
    assert win.tabs.count() == 2 and win.tabs.tabText(1).startswith("Similar:")

    win.tabs.setCurrentIndex(0)
    qtbot.wait(100)
    path = screenshots / "viewer.png"
    assert win.grab().save(str(path))
    assert path.stat().st_size > 10_000


def test_precedent_viewer_opens_a_folder(ct_folder: Path, tmp_path: Path) -> None:
    """``precedent viewer --folder DIR`` (node CLI → ``viewer_plugin.host.main``), in a
    process of its own; ``PRECEDENT_VIEWER_SCREENSHOT`` makes it save a picture and quit."""
    picture = tmp_path / "cli.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path),
           "HOME": str(tmp_path), "PRECEDENT_VIEWER_SCREENSHOT": str(picture)}
    done = subprocess.run(
        [sys.executable, "-m", "node", "viewer", "--url", "http://127.0.0.1:9",
         "--folder", str(ct_folder)],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert picture.stat().st_size > 5_000
