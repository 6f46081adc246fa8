"""One study on screen: its series list, the image (:mod:`viewer_plugin._canvas`), a
frame slider and window presets. Pixels come from :mod:`viewer_plugin._imaging`.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QListWidget, QSlider, QWidget

from viewer_plugin._canvas import ImageCanvas
from viewer_plugin._imaging import (
    WINDOW_PRESETS,
    Frame,
    StudyImages,
    is_monochrome1,
    window_to_uint8,
)
from viewer_plugin._layout import column, row

__all__ = ["StudyView"]


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

        bar = row(QLabel("Window"), self.preset_combo, (self.slider, 1), self.position_label,
                  margin=4)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.series_list)
        layout.addWidget(column((self.canvas, 1), bar), 1)

        self.series_list.currentRowChanged.connect(self.show_series)
        self.slider.valueChanged.connect(self.show_frame)
        self.canvas.step.connect(self._step)
        self.canvas.window_changed.connect(self.set_window)
        self.preset_combo.currentTextChanged.connect(self.apply_preset)
        if images.series:
            self.series_list.setCurrentRow(0)
        else:
            self.canvas.overlay = ["This study has no images."]

    def _step(self, delta: int) -> None:
        self.slider.setValue(self.slider.value() + delta)

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
