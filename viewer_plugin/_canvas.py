"""The image on screen: one frame, scaled to fit, with its overlay text (series, frame,
window) on a translucent dark box with a shadow, so the text stays readable on a
bright radiograph. Dragging changes window/level; the wheel steps through frames.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

__all__ = ["OVERLAY_BOX", "OVERLAY_TEXT", "ImageCanvas"]

OVERLAY_TEXT = QColor("#ffe98a")  # warm yellow, the usual PACS overlay colour
OVERLAY_BOX = QColor(0, 0, 0, 170)  # behind the text: readable on any image
_SHADOW = QColor(0, 0, 0, 230)
_MARGIN, _PAD = 8, 5


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
        font = QFont(self.font())
        font.setPointSizeF(max(10.0, font.pointSizeF()))
        font.setBold(True)
        self.overlay_font = font

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

    def overlay_rect(self) -> QRect:
        """Where the overlay box is drawn (empty without overlay text)."""
        if not self.overlay:
            return QRect()
        metrics = QFontMetrics(self.overlay_font)
        width = max(metrics.horizontalAdvance(line) for line in self.overlay)
        height = metrics.height() * len(self.overlay)
        return QRect(_MARGIN, _MARGIN, width + 2 * _PAD, height + 2 * _PAD)

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("black"))
        if self.image is not None:
            target = self.image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - target.width()) // 2
            y = (self.height() - target.height()) // 2
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(QRect(x, y, target.width(), target.height()), self.image)
        if self.overlay:
            self._paint_overlay(painter)
        painter.end()

    def _paint_overlay(self, painter: QPainter) -> None:
        box = self.overlay_rect()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(OVERLAY_BOX)
        painter.drawRoundedRect(box, 4, 4)
        painter.setFont(self.overlay_font)
        metrics = QFontMetrics(self.overlay_font)
        for i, line in enumerate(self.overlay):
            x = box.left() + _PAD
            y = box.top() + _PAD + metrics.ascent() + i * metrics.height()
            painter.setPen(_SHADOW)
            painter.drawText(x + 1, y + 1, line)
            painter.setPen(OVERLAY_TEXT)
            painter.drawText(x, y, line)

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
