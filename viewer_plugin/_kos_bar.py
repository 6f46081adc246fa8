"""Send to PACS: the destination chooser, the button, and the question asked before a
second Key Object Selection goes to the same study.

Each send adds another KOS series to the study being read, so before sending the bar
asks the node (QIDO-RS: a ``KO`` series described "Similar cases" in the study) and
remembers what it sent itself; when there is one already, it shows a warning with
"Send another" / "Don't send" instead of sending.
"""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from viewer_plugin import node_tasks
from viewer_plugin._layout import row
from viewer_plugin._worker import TaskAnswer, TaskRunner
from viewer_plugin.cases import KosResult
from viewer_plugin.connection import NodeSettings
from viewer_plugin.errors import PrecedentError
from viewer_plugin.query import SimilarQuery

__all__ = ["KosBar"]


class KosBar(QWidget):
    """The destination chooser, Send to PACS, and the "already sent" confirmation."""

    send_requested = Signal()  # the button: the panel answers with :meth:`send`
    status = Signal(str)  # a line for the status bar
    sent = Signal(str)  # "Key Object Selection stored on the node."
    failed = Signal(str, str)  # message, hint
    confirm_needed = Signal(str)  # the warning shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = TaskRunner(self)
        self._sent_for: set[str] = set()
        self._pending: tuple[NodeSettings, str, SimilarQuery, str | None] | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.destination_combo = QComboBox()
        self.destination_combo.setEditable(True)
        self.destination_combo.setToolTip("The PACS AE title to send the similar cases to")
        destination_edit = self.destination_combo.lineEdit()
        if destination_edit is not None:
            destination_edit.setPlaceholderText("destination AE (node default)")
        self.send_button = QPushButton("Send to PACS")
        self.send_button.setToolTip(
            "Store these similar cases as a Key Object Selection note and send it to the PACS")
        layout.addWidget(row(QLabel("To"), (self.destination_combo, 1), self.send_button))

        self.confirm = QFrame()
        self.confirm.setObjectName("kosConfirm")
        self.confirm.setStyleSheet(
            "QFrame#kosConfirm { background:#fff4d6; border:1px solid #e6c36a;"
            " border-radius:4px; }")
        confirm_row = QHBoxLayout(self.confirm)
        confirm_row.setContentsMargins(6, 4, 6, 4)
        self.confirm_label = QLabel()
        self.confirm_label.setWordWrap(True)
        self.send_again_button = QPushButton("Send another")
        self.keep_button = QPushButton("Don't send")
        confirm_row.addWidget(self.confirm_label, 1)
        confirm_row.addWidget(self.send_again_button)
        confirm_row.addWidget(self.keep_button)
        self.confirm.setVisible(False)
        layout.addWidget(self.confirm)

        self.send_button.clicked.connect(self.send_requested)
        self.send_again_button.clicked.connect(self._confirmed)
        self.keep_button.clicked.connect(self._dropped)

    @property
    def destination(self) -> str | None:
        return self.destination_combo.currentText().strip() or None

    def set_destinations(self, titles: list[str]) -> None:
        current = self.destination_combo.currentText()
        self.destination_combo.clear()
        self.destination_combo.addItems(titles)
        self.destination_combo.setEditText(current or (titles[0] if titles else ""))

    def send(self, node: NodeSettings, study: str, query: SimilarQuery) -> None:
        """Send the study's similar cases as a KOS, asking first when it already has one."""
        self._pending = (node, study, query, self.destination)
        self.send_button.setEnabled(False)
        self.confirm.setVisible(False)
        if study in self._sent_for:
            self._ask(1)
            return
        self.status.emit("Checking the study for an earlier note…")
        self.runner.start(partial(node_tasks.kos_series_in_study, node, study),
                          done=self._on_checked, failed=self._on_check_failed, context=study)

    def _is_pending(self, study: str) -> bool:
        return self._pending is not None and self._pending[1] == study

    def _on_checked(self, answer: TaskAnswer) -> None:
        if self._is_pending(answer.context):
            if answer.value:
                self._ask(len(answer.value))
            else:
                self._send_pending()

    def _on_check_failed(self, answer: TaskAnswer) -> None:
        if self._is_pending(answer.context):
            self._send_pending()  # the send itself says what is wrong with the node

    def _ask(self, earlier: int) -> None:
        notes = "a similar-cases note" if earlier == 1 else f"{earlier} similar-cases notes"
        text = (f"This study already has {notes} (Key Object Selection). Sending adds "
                "another series to the study in the PACS.")
        self.confirm_label.setText(text)
        self.confirm.setVisible(True)
        self.status.emit("")
        self.confirm_needed.emit(text)

    def _confirmed(self) -> None:
        self.confirm.setVisible(False)
        self._send_pending()

    def _dropped(self) -> None:
        self.confirm.setVisible(False)
        self._pending = None
        self.send_button.setEnabled(True)
        self.status.emit("Not sent.")

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            self.send_button.setEnabled(True)
            return
        node, study, query, destination = pending
        self.status.emit("Sending to PACS…")
        self.runner.start(partial(node_tasks.send_kos, node, study, query, destination),
                          done=self._on_sent, failed=self._on_failed, context=study)

    def _on_sent(self, answer: TaskAnswer) -> None:
        result: KosResult = answer.value
        self._sent_for.add(answer.context)
        self.send_button.setEnabled(True)
        where = f"sent to {result.sent_to}" if result.sent_to else "stored on the node"
        text = f"Key Object Selection {where}."
        self.status.emit(text)
        self.sent.emit(text)

    def _on_failed(self, answer: TaskAnswer) -> None:
        error: PrecedentError = answer.value
        self.send_button.setEnabled(True)
        self.status.emit("")
        self.failed.emit(f"Send to PACS failed. {error.message}", error.hint)

    def shutdown(self, timeout_ms: int) -> None:
        self.runner.shutdown(timeout_ms)
