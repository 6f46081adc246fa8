"""A small PySide6 DICOM viewer that hosts the Find-similar panel (``precedent viewer``).

It opens a study from the node (QIDO-RS / WADO-RS) or from a local folder
(pydicom), shows its images with window/level by mouse drag and presets, scrolls
through series and frames (wheel, slider, series list), and docks the
:class:`~viewer_plugin.panel.FindSimilarPanel` on the right; opening a result
shows that case in another tab. It implements
:class:`~viewer_plugin.contract.ViewerHost`.

    precedent viewer [--url URL] [--token TOKEN] [--study UID | --folder DIR] [--screenshot PNG]

calls :func:`main` with the arguments after ``viewer``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydicom import Dataset
from PySide6.QtCore import QPoint, QRect, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QImage, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QMainWindow,
    QSlider,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from viewer_plugin._imaging import (
    WINDOW_PRESETS,
    Frame,
    StudyImages,
    is_monochrome1,
    read_folder,
    window_to_uint8,
)
from viewer_plugin._worker import TaskRunner
from viewer_plugin.client import CancelToken, NodeSettings, PrecedentClient
from viewer_plugin.errors import PrecedentError
from viewer_plugin.panel import DEFAULT_URL, FindSimilarPanel

__all__ = ["HostWindow", "ImageCanvas", "StudyView", "build_window", "main"]


class ImageCanvas(QWidget):
    """Paints one frame; drag changes window/level, the wheel steps through frames."""

    step = Signal(int)  # +1 / -1 from the wheel
    window_changed = Signal(float, float)  # center, width after a drag

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(256, 256)
        self.setMouseTracking(False)
        self.image: QImage | None = None
        self._buffer: np.ndarray | None = None
        self.overlay: list[str] = []
        self.center = 0.0
        self.width_ = 1.0
        self.sensitivity = 1.0
        self._drag_from: QPoint | None = None
        self._drag_window = (0.0, 1.0)

    def set_frame(self, pixels: np.ndarray, overlay: list[str]) -> None:
        self._buffer = pixels  # QImage does not copy: keep the buffer alive
        h, w = pixels.shape[:2]
        if pixels.ndim == 3:
            self.image = QImage(pixels.data, w, h, pixels.strides[0], QImage.Format.Format_RGB888)
        else:
            self.image = QImage(pixels.data, w, h, pixels.strides[0],
                                QImage.Format.Format_Grayscale8)
        self.overlay = overlay
        self.update()

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("black"))
        if self.image is not None:
            target = self.image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - target.width()) // 2
            y = (self.height() - target.height()) // 2
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(QRect(x, y, target.width(), target.height()), self.image)
        painter.setPen(QColor("#e8e8a0"))
        for i, line in enumerate(self.overlay):
            painter.drawText(8, 18 + 16 * i, line)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self._drag_from = event.position().toPoint()
            self._drag_window = (self.center, self.width_)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is None:
            return
        delta = event.position().toPoint() - self._drag_from
        center, width = self._drag_window
        # right: wider window; down: higher level (the usual PACS convention)
        self.window_changed.emit(center + delta.y() * self.sensitivity,
                                 max(1.0, width + delta.x() * self.sensitivity * 2))

    def mouseReleaseEvent(self, _event: QMouseEvent) -> None:
        self._drag_from = None

    def wheelEvent(self, event: QWheelEvent) -> None:
        dy = event.angleDelta().y()
        if dy:
            self.step.emit(-1 if dy > 0 else 1)


class StudyView(QWidget):
    """One study: series list, the image, a frame slider and window presets."""

    def __init__(self, images: StudyImages, *, from_node: bool,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.images = images
        self.from_node = from_node
        self.series_index = 0
        self.frame_index = 0
        self.center, self.width_ = 0.0, 1.0

        self.series_list = QListWidget()
        self.series_list.setMaximumWidth(150)
        for series in images.series:
            self.series_list.addItem(series.label)
        self.canvas = ImageCanvas()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(WINDOW_PRESETS))
        self.position_label = QLabel()

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Window"))
        bar.addWidget(self.preset_combo)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.position_label)
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(self.canvas, 1)
        right.addLayout(bar)
        holder = QWidget()
        holder.setLayout(right)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.series_list)
        layout.addWidget(holder, 1)

        self.series_list.currentRowChanged.connect(self.show_series)
        self.slider.valueChanged.connect(self.show_frame)
        self.canvas.step.connect(lambda d: self.slider.setValue(self.slider.value() + d))
        self.canvas.window_changed.connect(self.set_window)
        self.preset_combo.currentTextChanged.connect(self.apply_preset)
        if images.series:
            self.series_list.setCurrentRow(0)
        else:
            self.canvas.overlay = ["This study has no images."]

    @property
    def study_instance_uid(self) -> str:
        return self.images.study_instance_uid

    @property
    def current_frame(self) -> Frame | None:
        if not self.images.series:
            return None
        frames = self.images.series[self.series_index].frames
        return frames[min(self.frame_index, len(frames) - 1)]

    def show_series(self, index: int) -> None:
        if not 0 <= index < len(self.images.series):
            return
        self.series_index = index
        frames = self.images.series[index].frames
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(frames) - 1))
        self.slider.setValue(len(frames) // 2)
        self.slider.blockSignals(False)
        self.frame_index = len(frames) // 2
        frame = self.current_frame
        assert frame is not None
        preset = WINDOW_PRESETS.get(self.preset_combo.currentText())
        self.center, self.width_ = preset or self.images.default_window(frame)
        self._render()

    def show_frame(self, index: int) -> None:
        self.frame_index = index
        self._render()

    def apply_preset(self, name: str) -> None:
        frame = self.current_frame
        if frame is None:
            return
        preset = WINDOW_PRESETS.get(name)
        self.set_window(*(preset or self.images.default_window(frame)))

    def set_window(self, center: float, width: float) -> None:
        self.center, self.width_ = float(center), max(1.0, float(width))
        self._render()

    def _render(self) -> None:
        frame = self.current_frame
        if frame is None:
            return
        try:
            pixels = self.images.pixels(frame)
        except Exception as exc:  # noqa: BLE001 — a frame that cannot decode is shown as such
            self.canvas.image = None
            self.canvas.overlay = [f"Cannot show this image: {exc}"]
            self.canvas.update()
            return
        shown = window_to_uint8(pixels, self.center, self.width_,
                                invert=is_monochrome1(frame.dataset))
        series = self.images.series[self.series_index]
        total = len(series.frames)
        self.position_label.setText(f"{self.frame_index + 1}/{total}")
        self.canvas.center, self.canvas.width_ = self.center, self.width_
        self.canvas.sensitivity = max(1.0, float(np.ptp(pixels)) / 512.0) if pixels.ndim == 2 \
            else 1.0
        self.canvas.set_frame(shown, [
            series.label,
            f"Image {self.frame_index + 1} / {total}",
            f"W {self.width_:.0f}  L {self.center:.0f}",
        ])


class HostWindow(QMainWindow):
    """The viewer's main window; a :class:`~viewer_plugin.contract.ViewerHost`."""

    study_opened = Signal(str)  # study UID, after a tab is added
    open_failed = Signal(str)

    def __init__(self, *, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Precedent viewer")
        self.settings = settings if settings is not None else QSettings("Precedent", "Viewer")
        self.runner = TaskRunner(self)
        self.tabs = QTabWidget()
        self.tabs.setTabsClosable(True)
        self.tabs.tabCloseRequested.connect(self._close_tab)
        self.setCentralWidget(self.tabs)
        self.message = QLabel()
        self.statusBar().addWidget(self.message, 1)

        self.panel = FindSimilarPanel(host=self, settings=self.settings)
        self.dock = QDockWidget("Find similar", self)
        self.dock.setObjectName("findSimilarDock")
        self.dock.setWidget(self.panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.resizeDocks([self.dock], [460], Qt.Orientation.Horizontal)

        file_menu = self.menuBar().addMenu("&File")
        open_folder = QAction("Open &folder…", self)
        open_folder.triggered.connect(self._ask_folder)
        open_node = QAction("Open study from &node…", self)
        open_node.triggered.connect(self._ask_study)
        quit_action = QAction("&Quit", self)
        quit_action.triggered.connect(self.close)
        for a in (open_folder, open_node, quit_action):
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
        settings = self.panel.node_settings()
        self.message.setText(f"Loading study {study_uid} from the node…")

        def work(cancel: CancelToken, _p: Callable[[Any], None]) -> list[Dataset]:
            with PrecedentClient(settings, cancel=cancel) as client:
                return client.retrieve_study(study_uid)

        def done(_g: int, datasets: list[Dataset]) -> None:
            self.add_study(datasets, from_node=True)

        self.runner.start(0, work, done=done, failed=self._failed)

    # ------------------------------------------------------------ opening

    def add_study(self, datasets: Sequence[Dataset], *, from_node: bool) -> StudyView:
        images = StudyImages(datasets)
        view = StudyView(images, from_node=from_node)
        first = self.tabs.count() == 0
        title = images.description[:40] if first else "Similar: " + images.description[:30]
        index = self.tabs.addTab(view, title)
        self.tabs.setTabToolTip(index, images.study_instance_uid)
        self.tabs.setCurrentIndex(index)
        self.message.setText(f"{len(images.datasets)} instances, {len(images.series)} series.")
        self.study_opened.emit(images.study_instance_uid)
        return view

    def open_folder(self, folder: str) -> StudyView | None:
        """Open a local study; when the node has the same study, queries use its UID."""
        try:
            datasets = read_folder(folder)
        except ValueError as exc:
            self._failed(0, PrecedentError(str(exc)))
            return None
        if not datasets:
            self._failed(0, PrecedentError(f"No DICOM files in {folder}."))
            return None
        view = self.add_study(datasets, from_node=False)
        uid = view.study_instance_uid
        if uid:
            settings = self.panel.node_settings()

            def work(cancel: CancelToken, _p: Callable[[Any], None]) -> bool:
                with PrecedentClient(settings, cancel=cancel) as client:
                    return bool(client.search_studies(StudyInstanceUID=uid))

            def done(_g: int, known: bool) -> None:
                if known:
                    view.from_node = True
                    self.message.setText(self.message.text() + " The node has this study.")

            self.runner.start(0, work, done=done, failed=lambda g, e: None)
        return view

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a DICOM folder")
        if folder:
            self.open_folder(folder)

    def _ask_study(self) -> None:
        uid, ok = QInputDialog.getText(self, "Open study from node", "Study Instance UID")
        if ok and uid.strip():
            self.open_study(uid.strip())

    def _failed(self, _g: int, error: PrecedentError) -> None:
        self.message.setText(str(error))
        self.open_failed.emit(str(error))

    def _close_tab(self, index: int) -> None:
        widget = self.tabs.widget(index)
        self.tabs.removeTab(index)
        if widget is not None:
            widget.deleteLater()

    def shutdown(self) -> None:
        self.panel.shutdown(2000)
        self.runner.shutdown(2000)

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)


def build_window(*, url: str | None = None, token: str | None = None,
                 settings: QSettings | None = None) -> HostWindow:
    """The host window, pointed at a node when ``url`` is given (does not show it)."""
    window = HostWindow(settings=settings)
    if url is not None or token is not None:
        current = window.panel.node_settings()
        window.panel.set_node(url or current.url, token if token is not None else current.token)
    return window


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="precedent viewer",
                                description="A DICOM viewer with the Find-similar panel.")
    p.add_argument("--url", help=f"the node's URL (default: the saved one, or {DEFAULT_URL})")
    p.add_argument("--token", default=os.environ.get("PRECEDENT_TOKEN"),
                   help="access token (default: $PRECEDENT_TOKEN, or the saved one)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--study", help="Study Instance UID to open from the node")
    source.add_argument("--folder", help="a local folder of DICOM files to open")
    p.add_argument("--screenshot", metavar="PNG",
                   default=os.environ.get("PRECEDENT_VIEWER_SCREENSHOT"),
                   help="save a picture of the window once the study is shown, then quit "
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
    saved: list[bool] = []
    if args.screenshot:
        def snap(*_: object) -> None:
            if not saved:
                saved.append(window.grab().save(args.screenshot))
                window.close()
                app.quit()

        window.study_opened.connect(lambda _uid: QTimer.singleShot(300, snap))
        window.open_failed.connect(snap)
        QTimer.singleShot(30_000, snap)  # whatever is on screen by then
    if args.study:
        window.open_study(args.study)
    elif args.folder:
        window.open_folder(args.folder)
    elif args.screenshot:
        QTimer.singleShot(300, snap)
    status = int(app.exec())
    if args.screenshot:
        return 0 if saved and saved[0] else 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
