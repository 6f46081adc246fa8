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
from PySide6.QtCore import QDate, QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QWheelEvent
from PySide6.QtWidgets import QApplication

from tests._synthetic import ct_instance, write_files
from tests.viewer_plugin._scans import SCAN_YEAR, StoredScan
from tests.viewer_plugin.conftest import SeededNode
from viewer_plugin._imaging import StudyImages, read_folder, window_to_uint8
from viewer_plugin.client import NodeSettings, PrecedentClient, SimilarQuery
from viewer_plugin.contract import ViewerHost, discover_panels, load_panel
from viewer_plugin.host import HostWindow, ImageCanvas, StudyView, build_window, main
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


def _scan(real_scans: tuple[StoredScan, ...], file: str) -> StoredScan:
    return next(s for s in real_scans if s.scan.file == file)


def _open(qtbot: Any, win: HostWindow, study: str) -> None:
    outcome: list[str] = []
    win.study_opened.connect(outcome.append)
    win.open_failed.connect(outcome.append)
    win.open_study(study)  # QIDO-RS + WADO-RS from the node
    qtbot.waitUntil(lambda: bool(outcome), timeout=WAIT_MS)
    assert outcome == [study]


def test_screenshot_of_the_viewer_with_the_panel_filled(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode,
        real_scans: tuple[StoredScan, ...], screenshots: Path) -> None:
    """The README's picture: a chest radiograph being read, its similar cases beside it
    (real CT, MR and CR scans from pydicom-data, with their reports)."""
    win = build_window(url=seeded_node.url, token=seeded_node.token, settings=qsettings)
    qtbot.addWidget(win)
    win.resize(1400, 860)
    win.show()
    chest = _scan(real_scans, "RG1_UNCR.dcm")
    _open(qtbot, win, chest.study_instance_uid)
    assert win.current_study() == chest.study_instance_uid
    view = win.current_view()
    assert view is not None and view.canvas.image is not None
    panel = win.panel
    panel.limit_spin.setValue(8)
    panel.date_check.setChecked(True)  # this year's cases: the real scans
    panel.date_from.setDate(QDate(SCAN_YEAR, 1, 1))
    panel.date_to.setDate(QDate(SCAN_YEAR, 12, 31))
    with (qtbot.waitSignal(panel.thumbnails_done, timeout=WAIT_MS) as thumbs,
          qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS)):
        qtbot.mouseClick(panel.find_button, Qt.MouseButton.LeftButton)
    assert thumbs.args[0] == len(panel.model.cases) == 8
    real = {s.study_instance_uid for s in real_scans}
    assert set(panel.case_uids) <= real  # real scans only, none synthetic
    qtbot.waitUntil(lambda: bool(panel.report_view.toPlainText().strip()), timeout=WAIT_MS)
    assert "Impression" in panel.report_view.toPlainText()

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


def test_precedent_viewer_opens_a_study_by_accession_number(
        tmp_path: Path, seeded_node: SeededNode, real_scans: tuple[StoredScan, ...]) -> None:
    """Launch with context, as a PACS starts an external viewer: ``--accession ACC``
    opens that study (exit status 0 only when it was shown)."""
    scan = _scan(real_scans, "MR2_UNCR.dcm")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path),
           "HOME": str(tmp_path)}
    runs = {}
    for accession in (scan.scan.accession, "NO-SUCH-ACC"):
        picture = tmp_path / f"{accession}.png"
        runs[accession] = subprocess.run(
            [sys.executable, "-m", "viewer_plugin.host", "--url", seeded_node.url,
             "--accession", accession, "--screenshot", str(picture)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
            cwd=Path(__file__).parents[2])
        assert picture.stat().st_size > 5_000
    assert runs[scan.scan.accession].returncode == 0, runs[scan.scan.accession].stderr[-2000:]
    assert runs["NO-SUCH-ACC"].returncode == 1


def test_an_accession_number_opens_its_study_or_says_it_is_not_there(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode,
        real_scans: tuple[StoredScan, ...]) -> None:
    win = build_window(url=seeded_node.url, token=seeded_node.token, settings=qsettings)
    qtbot.addWidget(win)
    win.show()
    scan = _scan(real_scans, "RG3_UNCR.dcm")
    with qtbot.waitSignal(win.study_opened, timeout=WAIT_MS) as opened:
        win.open_accession(scan.scan.accession)
    assert opened.args[0] == scan.study_instance_uid
    assert win.current_study() == scan.study_instance_uid

    with qtbot.waitSignal(win.open_failed, timeout=WAIT_MS):
        win.open_accession("NO-SUCH-ACC")
    assert "No study with accession number NO-SUCH-ACC" in win.panel.error_label.text()

    # several studies share it (a wildcard here): the browser lists them to choose from
    with qtbot.waitSignal(win.show_browser().browser.page_shown, timeout=WAIT_MS):
        win.open_accession("MR25*")
    browser = win.browser_dialog
    assert browser is not None and browser.isVisible()
    assert browser.browser.accession_edit.text() == "MR25*"
    assert browser.browser.table.rowCount() == 3  # the three 2025 MR studies


def test_a_study_without_a_description_gets_a_human_tab_title(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode,
        real_scans: tuple[StoredScan, ...]) -> None:
    win = build_window(url=seeded_node.url, token=seeded_node.token, settings=qsettings)
    qtbot.addWidget(win)
    win.show()
    head = _scan(real_scans, "693_UNCR.dcm")  # CT head, no Study Description
    assert not head.scan.description
    _open(qtbot, win, head.study_instance_uid)
    title = win.tabs.tabText(0)
    assert title == "CT · 2025-05-10 · Acc CT2505100005"
    assert head.study_instance_uid not in title
    assert head.scan.patient_name.split("^")[0] not in title  # identities hidden by default
    assert head.study_instance_uid in win.tabs.tabToolTip(0)


def test_the_status_bar_counts_what_is_shown_not_the_hidden_objects(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode,
        real_scans: tuple[StoredScan, ...]) -> None:
    """The study holds an image, its SR report and a KOS: one image is shown."""
    shoulder = _scan(real_scans, "MR2_UNCI.dcm")
    with PrecedentClient(NodeSettings(url=seeded_node.url, token=seeded_node.token)) as client:
        client.send_kos(shoulder.study_instance_uid, query=SimilarQuery(limit=3))
        modalities = {s["00080060"]["Value"][0]
                      for s in client.search_series(shoulder.study_instance_uid)}
    assert modalities == {"MR", "SR", "KO"}
    win = build_window(url=seeded_node.url, token=seeded_node.token, settings=qsettings)
    qtbot.addWidget(win)
    win.show()
    _open(qtbot, win, shoulder.study_instance_uid)
    assert win.message.text() == "1 instance, 1 series."
    view = win.current_view()
    assert view is not None and view.series_list.count() == 1


def test_a_node_that_is_down_is_the_reason_the_banner_gives(
        qtbot: Any, qsettings: Any) -> None:
    """``precedent viewer --study UID`` with the node down: the banner says why, and
    Find similar does not replace it with "No study is open"."""
    from tests._peers import free_port

    win = build_window(url=f"http://127.0.0.1:{free_port()}", settings=qsettings)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.open_failed, timeout=WAIT_MS):
        win.open_study("1.2.826.0.1.3680043.99.7")
    banner = win.panel.error_label
    assert banner.isVisible()
    assert "Cannot reach the Precedent node" in banner.text()
    assert "Check that the node is running" in banner.text()
    qtbot.mouseClick(win.panel.find_button, Qt.MouseButton.LeftButton)
    assert "Cannot reach the Precedent node" in banner.text()
    assert "No study is open" not in banner.text()


def test_the_overlay_is_readable_on_a_bright_radiograph(qtbot: Any) -> None:
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 400)
    canvas.set_frame(np.full((64, 64), 255, np.uint8), ["CR (1)", "Image 1 / 1",
                                                        "W 4000  L 2000"])
    picture = canvas.grab().toImage()
    box = canvas.overlay_rect()
    assert box.width() > 40 and box.height() > 30
    inside = [QColor(picture.pixel(x, y)).lightness()
              for x in range(box.left() + 2, box.right() - 2)
              for y in range(box.top() + 2, box.bottom() - 2)]
    bright = [v for v in inside if v > 160]  # the text itself
    dark = [v for v in inside if v < 90]  # the box behind it
    assert len(dark) > len(inside) / 2  # mostly a dark box on a white image…
    assert bright  # …with light text on it
    outside = QColor(picture.pixel(box.right() + 20, box.bottom() + 20)).lightness()
    assert outside > 240  # the image itself is untouched
