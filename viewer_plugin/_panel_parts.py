"""The panel's controls, in groups: the node connection, the query, the banner and the
"refined" line. Widgets that show and read plain state; the panel
(:mod:`viewer_plugin.panel`) connects them.
"""

from __future__ import annotations

import html
from datetime import date

from PySide6.QtCore import QDate, QSettings, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from viewer_plugin import _panel_settings
from viewer_plugin._layout import STRETCH, row
from viewer_plugin.connection import DEFAULT_URL, NodeSettings
from viewer_plugin.model import QueryState
from viewer_plugin.query import LevelValues

__all__ = ["Banner", "NodeBox", "QueryControls", "RefineBar", "qdate_to_date"]

MODALITIES = ["", "CT", "MR", "CR", "DX", "MG", "US", "PT", "NM", "XA", "RF", "OT"]
LEVEL_LABELS = [("Study", LevelValues.STUDY), ("Series", LevelValues.SERIES),
                ("Image", LevelValues.INSTANCE)]

_BANNER_STYLE = (
    "QLabel#errorLabel { background:#fde2e1; color:#7a1712; border:1px solid #e8a09a;"
    " border-radius:4px; padding:6px; }")


def qdate_to_date(d: QDate) -> date:
    return date(d.year(), d.month(), d.day())


def modality_combo() -> QComboBox:
    """An editable modality choice: "Any" or one of :data:`MODALITIES`."""
    combo = QComboBox()
    combo.setEditable(True)
    for m in MODALITIES:
        combo.addItem(m or "Any", m)
    return combo


def chosen_modality(combo: QComboBox) -> str:
    """What :func:`modality_combo` says, "" for any."""
    modality = combo.currentText().strip()
    return "" if modality.lower() == "any" else modality


def date_range(years_back: int) -> tuple[QCheckBox, QDateEdit, QDateEdit]:
    """A "Dates" check box and the from/to dates it turns on (from ``years_back`` years
    ago to today)."""
    check = QCheckBox("Dates")
    date_from = QDateEdit(QDate.currentDate().addYears(-years_back))
    date_to = QDateEdit(QDate.currentDate())
    for d in (date_from, date_to):
        d.setCalendarPopup(True)
        d.setDisplayFormat("yyyy-MM-dd")
        d.setEnabled(False)
    check.toggled.connect(date_from.setEnabled)
    check.toggled.connect(date_to.setEnabled)
    return check, date_from, date_to


def chosen_dates(check: QCheckBox, date_from: QDateEdit, date_to: QDateEdit
                 ) -> tuple[date | None, date | None]:
    """The range a :func:`date_range` says, earliest first; (None, None) when off."""
    if not check.isChecked():
        return None, None
    a, b = qdate_to_date(date_from.date()), qdate_to_date(date_to.date())
    return min(a, b), max(a, b)


class Banner(QLabel):
    """The red line that says what went wrong and what to do.

    A problem the host reported (e.g. the study could not be opened because the node
    is down) is remembered, so that "No study is open" never hides the real reason.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setObjectName("errorLabel")
        self.setStyleSheet(_BANNER_STYLE)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setVisible(False)
        self.host_problem = ""

    @staticmethod
    def html(message: str, hint: str = "") -> str:
        text = f"<b>{html.escape(message)}</b>"
        return text + (f"<br/>{html.escape(hint)}" if hint else "")

    def show_html(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))

    def say(self, message: str, hint: str = "") -> None:
        self.show_html(self.html(message, hint))

    def clear_text(self) -> None:
        self.show_html("")

    def say_host_problem(self, message: str, hint: str = "") -> None:
        self.host_problem = self.html(message, hint)
        self.show_html(self.host_problem)

    def forget_host_problem(self) -> None:
        if self.host_problem and self.text() == self.host_problem:
            self.clear_text()
        self.host_problem = ""


class NodeBox(QWidget):
    """URL, token (masked) and timeout of the node, and the consensus threshold; folded
    away once a URL is saved."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        self.toggle = QToolButton()
        self.toggle.setText("Node connection and settings")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.fields = QFrame()
        self.fields.setFrameShape(QFrame.Shape.StyledPanel)
        form = QFormLayout(self.fields)
        form.setContentsMargins(6, 4, 6, 4)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText(DEFAULT_URL)
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("access token (kept hidden)")
        self.timeout_spin = QDoubleSpinBox()
        self.timeout_spin.setRange(0.5, 300.0)
        self.timeout_spin.setSuffix(" s")
        self.min_support_spin = QSpinBox()
        self.min_support_spin.setRange(0, 100)
        self.min_support_spin.setSuffix(" %")
        self.min_support_spin.setToolTip(
            "Show a finding as the cases' consensus only when at least this share of them "
            "(and at least two) carry it; 0 shows any shared label")
        form.addRow("URL", self.url_edit)
        form.addRow("Token", self.token_edit)
        form.addRow("Timeout", self.timeout_spin)
        form.addRow("Consensus from", self.min_support_spin)
        column.addWidget(self.toggle)
        column.addWidget(self.fields)
        self.toggle.toggled.connect(self.unfold)

    def unfold(self, on: bool) -> None:
        self.toggle.setChecked(on)
        self.fields.setVisible(on)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def load(self, settings: QSettings) -> None:
        """Show the saved node; unfolded until a URL was ever saved."""
        url, token, timeout, saved = _panel_settings.load_node(settings)
        self.set_values(url, token, timeout)
        self.unfold(not saved)

    def save(self, settings: QSettings) -> None:
        _panel_settings.save_node(settings, self.url_edit.text(), self.token_edit.text(),
                                  self.timeout_spin.value())

    def set_values(self, url: str, token: str, timeout: float | None = None) -> None:
        self.url_edit.setText(url)
        self.token_edit.setText(token)
        if timeout is not None:
            self.timeout_spin.setValue(timeout)

    def node_settings(self) -> NodeSettings:
        """The node as the fields say (``ValueError`` naming the field when one is wrong)."""
        return NodeSettings(url=self.url_edit.text().strip() or DEFAULT_URL,
                            token=self.token_edit.text().strip(),
                            timeout=self.timeout_spin.value())


class QueryControls(QGroupBox):
    """Level, number of cases, filters, privacy, text search, and the action buttons."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Query", parent)
        self.level_combo = QComboBox()
        for label, level in LEVEL_LABELS:
            self.level_combo.addItem(label, level.value)
        self.limit_spin = QSpinBox()
        self.limit_spin.setRange(1, 100)
        self.modality_combo = modality_combo()

        self.date_check, self.date_from, self.date_to = date_range(5)

        self.exclude_check = QCheckBox("Exclude this patient")
        self.hide_check = QCheckBox("Hide patient names and IDs")

        self.text_edit = QLineEdit()
        self.text_edit.setPlaceholderText("Search by words, e.g. “pneumothorax right apex”")
        self.hybrid_check = QCheckBox("+ reports")
        self.hybrid_check.setToolTip("Hybrid: also search the reports' text (BM25)")
        self.text_button = QPushButton("Search text")

        self.find_button = QPushButton("Find similar")
        self.find_button.setDefault(True)
        self.find_button.setToolTip("Find cases similar to the study on screen")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumHeight(12)
        self.progress.setTextVisible(False)

        rows = QVBoxLayout(self)
        for line in (
            row(QLabel("Level"), self.level_combo, QLabel("Cases"), self.limit_spin,
                QLabel("Modality"), self.modality_combo),
            row(self.date_check, self.date_from, QLabel("to"), self.date_to, STRETCH),
            row(self.exclude_check, self.hide_check, STRETCH),
            row((self.text_edit, 1), self.hybrid_check, self.text_button),
            row(self.find_button, self.cancel_button, (self.progress, 1)),
        ):
            rows.addWidget(line)

    def show_state(self, st: QueryState) -> None:
        """Set the controls from the model's state."""
        self.level_combo.setCurrentIndex(max(0, self.level_combo.findData(st.level.value)))
        self.limit_spin.setValue(st.limit)
        self.exclude_check.setChecked(st.exclude_patient)
        self.hide_check.setChecked(st.hide_identity)
        self.hybrid_check.setChecked(st.hybrid)

    def read_state(self, st: QueryState) -> None:
        """Copy what the controls say into the model's state."""
        st.level = LevelValues(self.level_combo.currentData() or LevelValues.STUDY.value)
        st.limit = self.limit_spin.value()
        st.modality = chosen_modality(self.modality_combo).upper()
        st.date_from, st.date_to = chosen_dates(self.date_check, self.date_from, self.date_to)
        st.exclude_patient = self.exclude_check.isChecked()
        st.hide_identity = self.hide_check.isChecked()
        st.hybrid = self.hybrid_check.isChecked()
        st.text = self.text_edit.text()


class RefineBar(QFrame):
    """"Refined: 1 more like, 1 less like" and a Reset, while feedback changes the query."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("refineBar")
        self.setStyleSheet("QFrame#refineBar { background:#e6f0fb; border-radius:4px; }")
        line = QHBoxLayout(self)
        line.setContentsMargins(6, 2, 6, 2)
        self.label = QLabel()
        self.label.setStyleSheet("color:#1d4f91;")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Forget the ▲/▼ marks and show the original answer")
        line.addWidget(self.label, 1)
        line.addWidget(self.reset_button)
        self.setVisible(False)
