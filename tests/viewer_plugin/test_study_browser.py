"""The study browser against the real node: find a study the way people do (patient
name or ID, accession number, dates, modality), page through, open it."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QDate, Qt

from tests.viewer_plugin._scans import SCAN_YEAR, StoredScan
from tests.viewer_plugin.conftest import SeededNode
from viewer_plugin.connection import NodeSettings
from viewer_plugin.host import build_window
from viewer_plugin.study_browser import StudyBrowser

WAIT_MS = 30_000


@pytest.fixture
def browser(qtbot: Any, seeded_node: SeededNode,
            real_scans: tuple[StoredScan, ...]) -> StudyBrowser:
    widget = StudyBrowser(NodeSettings(url=seeded_node.url, token=seeded_node.token))
    qtbot.addWidget(widget)
    widget.resize(980, 560)
    widget.show()
    return widget


def search(qtbot: Any, browser: StudyBrowser) -> list[str]:
    """Click Search; the UIDs of the rows shown."""
    with qtbot.waitSignal(browser.page_shown, timeout=WAIT_MS):
        qtbot.mouseClick(browser.search_button, Qt.MouseButton.LeftButton)
    return shown(browser)


def shown(browser: StudyBrowser) -> list[str]:
    return [browser.table.item(r, 0).data(Qt.ItemDataRole.UserRole)
            for r in range(browser.table.rowCount())]


def by_file(real_scans: tuple[StoredScan, ...], name: str) -> StoredScan:
    return next(s for s in real_scans if s.scan.file == name)


def test_a_patient_is_found_by_part_of_the_name_in_any_case(
        qtbot: Any, browser: StudyBrowser, real_scans: tuple[StoredScan, ...]) -> None:
    chest = by_file(real_scans, "RG1_UNCR.dcm")
    browser.patient_name_edit.setText("moreau")
    assert search(qtbot, browser) == [chest.study_instance_uid]
    cells = [browser.table.item(0, c).text() for c in range(browser.table.columnCount())]
    assert cells[:6] == ["Moreau, Claire", "SC-0001", "2025-06-14", "CR2506140001", "CR",
                         "XR chest PA"]  # the image's modality, not its report's (SR)
    assert browser.page_label.text() == "Studies 1–1"

    browser.patient_name_edit.setText("")
    browser.patient_id_edit.setText("SC-0003")
    assert search(qtbot, browser) == [by_file(real_scans, "RG3_UNCR.dcm").study_instance_uid]
    browser.patient_id_edit.setText("")
    browser.accession_edit.setText("CT2505100005")
    assert search(qtbot, browser) == [by_file(real_scans, "693_UNCR.dcm").study_instance_uid]


def test_modality_and_date_range_narrow_the_list(
        qtbot: Any, browser: StudyBrowser, real_scans: tuple[StoredScan, ...]) -> None:
    browser.modality_combo.setCurrentText("MR")
    browser.date_check.setChecked(True)
    browser.date_from.setDate(QDate(SCAN_YEAR, 1, 1))
    browser.date_to.setDate(QDate(SCAN_YEAR, 12, 31))
    expected = {s.study_instance_uid for s in real_scans if s.modality == "MR"}
    assert set(search(qtbot, browser)) == expected and len(expected) == 3

    browser.modality_combo.setCurrentText("Any")
    browser.date_from.setDate(QDate(SCAN_YEAR, 3, 1))
    browser.date_to.setDate(QDate(SCAN_YEAR, 3, 31))
    march = {s.study_instance_uid for s in real_scans
             if date(SCAN_YEAR, 3, 1) <= date.fromisoformat(
                 f"{s.scan.study_date[:4]}-{s.scan.study_date[4:6]}-{s.scan.study_date[6:]}")
             <= date(SCAN_YEAR, 3, 31)}
    assert set(search(qtbot, browser)) == march and len(march) == 2

    browser.patient_name_edit.setText("nobody-by-this-name")
    assert search(qtbot, browser) == []
    assert browser.page_label.text() == "No studies match."
    assert not browser.open_button.isEnabled()


def test_pages_cover_every_study_once(
        qtbot: Any, browser: StudyBrowser, seeded_node: SeededNode) -> None:
    everything = seeded_node.stored_study_uids()
    browser.page_size = 4
    seen = search(qtbot, browser)
    assert len(seen) == 4 and not browser.previous_button.isEnabled()
    first_page = list(seen)
    while browser.next_button.isEnabled():
        with qtbot.waitSignal(browser.page_shown, timeout=WAIT_MS):
            qtbot.mouseClick(browser.next_button, Qt.MouseButton.LeftButton)
        page = shown(browser)
        assert 1 <= len(page) <= 4
        seen += page
    assert len(seen) == len(set(seen)) == len(everything)  # no study twice, none left out
    assert set(seen) == everything
    last = len(everything) - (len(everything) - 1) % 4
    assert browser.page_label.text() == f"Studies {last}–{len(everything)}"
    for _ in range((len(everything) - 1) // 4):
        with qtbot.waitSignal(browser.page_shown, timeout=WAIT_MS):
            qtbot.mouseClick(browser.previous_button, Qt.MouseButton.LeftButton)
    assert shown(browser) == first_page


def test_an_unreachable_node_is_said_in_the_browser(qtbot: Any) -> None:
    from tests._peers import free_port

    widget = StudyBrowser(NodeSettings(url=f"http://127.0.0.1:{free_port()}"))
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.search_failed, timeout=WAIT_MS):
        widget.search()
    assert "Cannot reach the Precedent node" in widget.banner.text()
    assert widget.banner.isVisibleTo(widget)


def test_the_viewer_opens_the_study_chosen_in_the_browser(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode,
        real_scans: tuple[StoredScan, ...], screenshots: Path) -> None:
    win = build_window(url=seeded_node.url, token=seeded_node.token, settings=qsettings)
    qtbot.addWidget(win)
    win.show()
    dialog = win.show_browser()
    browser = dialog.browser
    browser.date_check.setChecked(True)
    browser.date_from.setDate(QDate(SCAN_YEAR, 1, 1))
    browser.date_to.setDate(QDate(SCAN_YEAR, 12, 31))
    rows = search(qtbot, browser)
    assert set(rows) == {s.study_instance_uid for s in real_scans}
    path = screenshots / "study-browser.png"
    assert dialog.grab().save(str(path))
    assert path.stat().st_size > 10_000

    wanted = by_file(real_scans, "MR-SIEMENS-DICOM-WithOverlays.dcm").study_instance_uid
    rect = browser.table.visualItemRect(browser.table.item(rows.index(wanted), 2))
    qtbot.mouseClick(browser.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert browser.selected_study() == wanted
    with qtbot.waitSignal(win.study_opened, timeout=WAIT_MS) as opened:
        qtbot.mouseClick(browser.open_button, Qt.MouseButton.LeftButton)
    assert opened.args[0] == wanted
    assert win.current_study() == wanted
    assert win.tabs.tabText(0) == "MR abdomen liver"
    assert not dialog.isVisible()
