"""A small PySide6 DICOM viewer that hosts the Find-similar panel (``precedent viewer``).

It opens a study from the node (found with the study browser, or given on the command
line by Study Instance UID or accession number, the way a PACS launches an external
application) or from a local folder, shows its images (:mod:`viewer_plugin._study_view`)
with window/level by mouse drag and presets, scrolls through series and frames, and
docks the :class:`~viewer_plugin.panel.FindSimilarPanel` on the right; opening a result
shows that case in another tab. It implements :class:`~viewer_plugin.contract.ViewerHost`.

    precedent viewer [--url URL] [--token TOKEN]
                     [--study UID | --accession ACC | --folder DIR] [--screenshot PNG]

calls :func:`main` with the arguments after ``viewer``. Without a study it opens the
study browser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from functools import partial

from pydicom import Dataset
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QTabWidget,
    QWidget,
)

from viewer_plugin import node_tasks
from viewer_plugin._canvas import ImageCanvas
from viewer_plugin._imaging import StudyImages, read_folder
from viewer_plugin._screenshot import Screenshot
from viewer_plugin._study_view import StudyView
from viewer_plugin._worker import TaskAnswer, TaskRunner
from viewer_plugin.connection import DEFAULT_URL, NodeSettings
from viewer_plugin.errors import NotFound, PrecedentError
from viewer_plugin.panel import FindSimilarPanel
from viewer_plugin.study_browser import StudyBrowserDialog
from viewer_plugin.study_search import StudyPage, StudySearch

__all__ = ["HostWindow", "ImageCanvas", "StudyView", "build_window", "main"]


class HostWindow(QMainWindow):
    """The viewer's main window; a :class:`~viewer_plugin.contract.ViewerHost`."""

    study_opened = Signal(str)  # study UID, after a tab is added
    open_failed = Signal(str)

    def __init__(self, *, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Precedent viewer")
        self.settings = settings if settings is not None else QSettings(
            "Precedent", "Viewer", self)
        self.runner = TaskRunner(self)
        self.tabs = QTabWidget()
        self.tabs.setTabsClosable(True)
        self.tabs.tabCloseRequested.connect(self._close_tab)
        self.setCentralWidget(self.tabs)
        self.message = QLabel()
        self.statusBar().addWidget(self.message, 1)
        self.browser_dialog: StudyBrowserDialog | None = None

        self.panel = FindSimilarPanel(host=self, settings=self.settings)
        self.dock = QDockWidget("Find similar", self)
        self.dock.setObjectName("findSimilarDock")
        self.dock.setWidget(self.panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.resizeDocks([self.dock], [460], Qt.Orientation.Horizontal)

        file_menu = self.menuBar().addMenu("&File")
        find_study = QAction("&Find study on node…", self)
        find_study.setShortcut(QKeySequence.StandardKey.Open)
        find_study.triggered.connect(self._browse)
        open_uid = QAction("Open study by &UID…", self)
        open_uid.triggered.connect(self._ask_study)
        open_folder = QAction("Open &folder…", self)
        open_folder.triggered.connect(self._ask_folder)
        quit_action = QAction("&Quit", self)
        quit_action.triggered.connect(self.close)
        for a in (find_study, open_uid, open_folder, quit_action):
            file_menu.addAction(a)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.dock.toggleViewAction())
        self.resize(1400, 860)

    # ------------------------------------------------------------ ViewerHost

    def current_view(self) -> StudyView | None:
        view = self.tabs.currentWidget()
        return view if isinstance(view, StudyView) else None

    def current_study(self) -> str | Sequence[Dataset] | None:
        view = self.current_view()
        if view is None:
            return None
        if view.from_node and view.study_instance_uid:
            return view.study_instance_uid
        return view.images.datasets

    def current_image(self) -> tuple[str, str] | None:
        view = self.current_view()
        frame = view.current_frame if view is not None else None
        if view is None or frame is None or not view.from_node:
            return None
        return (str(frame.dataset.SeriesInstanceUID), str(frame.dataset.SOPInstanceUID))

    def open_study(self, study_uid: str) -> None:
        """Fetch a study from the node (WADO-RS) and show it in a new tab."""
        for i in range(self.tabs.count()):
            view = self.tabs.widget(i)
            if isinstance(view, StudyView) and view.study_instance_uid == study_uid:
                self.tabs.setCurrentIndex(i)
                self.study_opened.emit(study_uid)
                return
        node = self._node()
        if node is None:
            return
        self.message.setText("Loading the study from the node…")
        self.runner.start(partial(node_tasks.retrieve_study, node, study_uid),
                          done=self._on_retrieved, failed=self._on_failed, context=study_uid)

    def _on_retrieved(self, answer: TaskAnswer) -> None:
        self.add_study(answer.value, from_node=True)

    # ------------------------------------------------------------ opening

    def add_study(self, datasets: Sequence[Dataset], *, from_node: bool) -> StudyView:
        images = StudyImages(datasets)
        view = StudyView(images, from_node=from_node)
        title = images.title(hide_identity=self.panel.model.state.hide_identity)
        if self.tabs.count() > 0:
            title = "Similar: " + title[:30]
        index = self.tabs.addTab(view, title[:40])
        self.tabs.setTabToolTip(index, f"{title}\nStudy Instance UID {images.study_instance_uid}")
        self.tabs.setCurrentIndex(index)
        self.message.setText(images.summary)
        self.panel.clear_host_problem()
        self.study_opened.emit(images.study_instance_uid)
        return view

    def open_folder(self, folder: str) -> StudyView | None:
        """Open a local study; when the node has the same study, queries use its UID."""
        try:
            datasets = read_folder(folder)
        except ValueError as exc:
            self._fail(PrecedentError(str(exc)))
            return None
        if not datasets:
            self._fail(PrecedentError(f"No DICOM files in {folder}.",
                                      hint="Pick a folder that holds a study's files."))
            return None
        view = self.add_study(datasets, from_node=False)
        uid = view.study_instance_uid
        node = self._node(quiet=True)
        if uid and node is not None:
            self.runner.start(partial(node_tasks.study_is_on_node, node, uid),
                              done=self._on_known, failed=self._ignore, context=uid)
        return view

    def _on_known(self, answer: TaskAnswer) -> None:
        if not answer.value:
            return
        for i in range(self.tabs.count()):
            view = self.tabs.widget(i)
            if isinstance(view, StudyView) and view.study_instance_uid == answer.context:
                view.from_node = True
        self.message.setText(self.message.text() + " The node has this study.")

    def _ignore(self, _answer: TaskAnswer) -> None:
        """A question whose failure changes nothing (the node is asked again later)."""

    def open_accession(self, accession: str) -> None:
        """Open the study with this accession number (several: the browser lists them)."""
        node = self._node()
        if node is None:
            return
        self.message.setText(f"Looking for accession number {accession} on the node…")
        search = StudySearch(accession=accession, page_size=25)
        self.runner.start(partial(node_tasks.search_studies, node, search),
                          done=self._on_accession, failed=self._on_failed, context=accession)

    def _on_accession(self, answer: TaskAnswer) -> None:
        page: StudyPage = answer.value
        if len(page.rows) == 1:
            self.open_study(page.rows[0].study_instance_uid)
        elif page.rows:
            self.message.setText(f"{len(page.rows)} studies have accession number "
                                 f"{answer.context}: pick one.")
            self.show_browser(page.search)
        else:
            self._fail(NotFound(
                f"No study with accession number {answer.context} is on the node.", status=404,
                hint="Check the number, or find the study with File ▸ Find study on node."))

    def show_browser(self, search: StudySearch | None = None) -> StudyBrowserDialog:
        """The study browser (a dialog), searching at once when ``search`` is given."""
        if self.browser_dialog is None:
            self.browser_dialog = StudyBrowserDialog(parent=self)
            self.browser_dialog.browser.study_chosen.connect(self.open_study)
        browser = self.browser_dialog.browser
        node = self._node()
        if node is not None:
            browser.set_node(node)
        if search is not None:
            browser.set_search(search)
            browser.search()
        self.browser_dialog.show()
        self.browser_dialog.raise_()
        return self.browser_dialog

    def _browse(self) -> None:
        self.show_browser()

    def _node(self, *, quiet: bool = False) -> NodeSettings | None:
        try:
            return self.panel.node_settings()
        except ValueError as exc:
            if not quiet:
                self._fail(PrecedentError(f"The node settings are not valid: {exc}",
                                          hint="Correct them under Node connection and settings."))
            return None

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a DICOM folder")
        if folder:
            self.open_folder(folder)

    def _ask_study(self) -> None:
        uid, ok = QInputDialog.getText(self, "Open study from node", "Study Instance UID")
        if ok and uid.strip():
            self.open_study(uid.strip())

    def _on_failed(self, answer: TaskAnswer) -> None:
        self._fail(answer.value)

    def _fail(self, error: PrecedentError) -> None:
        """Say why a study did not open: status bar and the panel's banner, one line each."""
        self.message.setText(str(error))
        self.panel.show_host_problem(f"The study could not be opened. {error.message}",
                                     error.hint)
        self.open_failed.emit(str(error))

    def _close_tab(self, index: int) -> None:
        widget = self.tabs.widget(index)
        self.tabs.removeTab(index)
        if widget is not None:
            widget.deleteLater()

    def shutdown(self) -> None:
        self.panel.shutdown(2000)
        self.runner.shutdown(2000)
        if self.browser_dialog is not None:
            self.browser_dialog.browser.shutdown(2000)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        if self.browser_dialog is not None:
            self.browser_dialog.close()
        super().closeEvent(event)


def build_window(*, url: str | None = None, token: str | None = None,
                 settings: QSettings | None = None) -> HostWindow:
    """The host window, pointed at a node when ``url`` is given (does not show it)."""
    window = HostWindow(settings=settings)
    if url is not None or token is not None:
        current = window.panel.node_box
        window.panel.set_node(url or current.url_edit.text(),
                              token if token is not None else current.token_edit.text())
    return window


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="precedent viewer",
                                description="A DICOM viewer with the Find-similar panel.")
    p.add_argument("--url", help=f"the node's URL (default: the saved one, or {DEFAULT_URL})")
    p.add_argument("--token", default=os.environ.get("PRECEDENT_TOKEN"),
                   help="access token (default: $PRECEDENT_TOKEN, or the saved one)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--study", help="Study Instance UID to open from the node")
    source.add_argument("--accession",
                        help="accession number of the study to open from the node (the way "
                             "a PACS launches an external viewer; several matches: the "
                             "study browser lists them)")
    source.add_argument("--folder", help="a local folder of DICOM files to open")
    p.add_argument("--screenshot", metavar="PNG",
                   default=os.environ.get("PRECEDENT_VIEWER_SCREENSHOT"),
                   help="save a picture of the window once the study is shown, then quit; "
                        "the exit status is 1 when the study could not be opened "
                        "(default: $PRECEDENT_VIEWER_SCREENSHOT)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the viewer; ``argv`` are the arguments after ``precedent viewer``."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.url is not None:
        NodeSettings(url=args.url)  # a bad URL fails here, naming the argument
    app = QApplication.instance() or QApplication(["precedent-viewer"])
    window = build_window(url=args.url, token=args.token)
    window.show()
    shot = (Screenshot(window, args.screenshot, opened=window.study_opened,
                       failed=window.open_failed) if args.screenshot else None)
    if args.study:
        window.open_study(args.study)
    elif args.accession:
        window.open_accession(args.accession)
    elif args.folder:
        window.open_folder(args.folder)
    elif shot is not None:
        shot.soon()
    else:
        window.show_browser()
    status = int(app.exec())
    if shot is not None:
        return 0 if shot.ok else 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
