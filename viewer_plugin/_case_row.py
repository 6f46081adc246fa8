"""One result in the panel's list: thumbnail, rank and score, details, and the
▲ More / ▼ Less / Open buttons. Its clicks leave it as signals carrying the case's
UIDs (plain text); the row holds no reference to the panel.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QWidget

from viewer_plugin._layout import STRETCH, column
from viewer_plugin.cases import SimilarCase
from viewer_plugin.model import FeedbackValues, PanelModel

__all__ = ["THUMBNAIL_SIZE", "CaseRow"]

THUMBNAIL_SIZE = 96


class CaseRow(QFrame):
    """One result: thumbnail, score and details, thumbs up / down, open."""

    feedback_clicked = Signal(str, str)  # case UID, FeedbackValues value
    open_clicked = Signal(str)  # study UID

    def __init__(self, case: SimilarCase, model: PanelModel,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.case = case
        self.setObjectName("caseRow")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.thumbnail = QLabel()
        self.thumbnail.setFixedSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setStyleSheet("background:#111; color:#777;")
        self.thumbnail.setText("…")
        layout.addWidget(self.thumbnail)

        self.title = QLabel()
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.patient = QLabel()
        self.patient.setStyleSheet("color:#666;")
        self.labels = QLabel()
        self.labels.setStyleSheet("color:#2a6;")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        for w in (self.details, self.patient, self.labels):
            w.setTextFormat(Qt.TextFormat.PlainText)
        for w in (self.title, self.details, self.patient, self.labels):
            w.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
            w.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            w.setMinimumWidth(60)
        layout.addWidget(column(self.title, self.details, self.patient, self.labels, STRETCH),
                         1)

        self.thumbs_up = QToolButton()
        self.thumbs_up.setText("▲ More")
        self.thumbs_up.setToolTip("More like this: re-run the query towards this case")
        self.thumbs_up.setCheckable(True)
        self.thumbs_down = QToolButton()
        self.thumbs_down.setText("▼ Less")
        self.thumbs_down.setToolTip("Less like this: re-run the query away from this case")
        self.thumbs_down.setCheckable(True)
        self.open_button = QToolButton()
        self.open_button.setText("Open")
        self.open_button.setToolTip("Open this case in the viewer")
        for b in (self.thumbs_up, self.thumbs_down, self.open_button):
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setMinimumWidth(70)
        layout.addWidget(column(self.thumbs_up, self.thumbs_down, self.open_button, STRETCH))

        self.thumbs_up.clicked.connect(self._more)
        self.thumbs_down.clicked.connect(self._less)
        self.open_button.clicked.connect(self._open)
        self.refresh(model)

    def _more(self) -> None:
        self.feedback_clicked.emit(self.case.uid, FeedbackValues.POSITIVE.value)

    def _less(self) -> None:
        self.feedback_clicked.emit(self.case.uid, FeedbackValues.NEGATIVE.value)

    def _open(self) -> None:
        self.open_clicked.emit(self.case.study_instance_uid)

    def refresh(self, model: PanelModel) -> None:
        case = self.case
        self.title.setText(f"<b>#{case.rank or '?'}</b> &nbsp; "
                           f"{html.escape(model.score_text(case))}")
        self.details.setText(model.case_summary(case))
        self.patient.setText(f"Patient: {model.patient_display(case)}")
        self.labels.setText(", ".join(case.labels))
        self.labels.setVisible(bool(case.labels))
        mark = model.feedback(case.uid)
        self.thumbs_up.setChecked(mark is FeedbackValues.POSITIVE)
        self.thumbs_down.setChecked(mark is FeedbackValues.NEGATIVE)

    def set_thumbnail(self, data: bytes) -> bool:
        image = QImage.fromData(data)
        if image.isNull():
            return False
        pixmap = QPixmap.fromImage(image).scaled(
            THUMBNAIL_SIZE, THUMBNAIL_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation)
        self.thumbnail.setPixmap(pixmap)
        return True
