"""The panel's answer: the list of similar cases (with their thumbnails) above the
selected case's report. It fetches thumbnails and whole reports on worker threads and
renders the :class:`~viewer_plugin.model.PanelModel` it is given; the rows' clicks
leave it as signals carrying UIDs.
"""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QTextBrowser,
    QWidget,
)

from viewer_plugin import node_tasks
from viewer_plugin._case_row import THUMBNAIL_SIZE, CaseRow
from viewer_plugin._worker import Task, TaskAnswer, TaskRunner
from viewer_plugin.connection import NodeSettings
from viewer_plugin.model import PanelModel

__all__ = ["ResultsView"]


class ResultsView(QSplitter):
    """Cases above, the selected case's report below."""

    thumbnails_done = Signal(int)  # number of thumbnails shown
    report_shown = Signal(str)  # study UID whose full report is in the pane
    feedback_clicked = Signal(str, str)  # case UID, FeedbackValues value
    open_clicked = Signal(str)  # study UID

    def __init__(self, model: PanelModel, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.model = model
        self.runner = TaskRunner(self)
        self._node: NodeSettings | None = None
        self._rows: list[CaseRow] = []
        self._thumbnail_count = 0
        self._thumb_task: Task | None = None
        self.results_list = QListWidget()
        self.results_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results_list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.results_list.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.results_list.setStyleSheet(
            "QListWidget::item { border-bottom: 1px solid #ddd; }"
            "QListWidget::item:selected { background: #d6e6fb; }")
        self.results_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.results_list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.report_view = QTextBrowser()
        self.report_view.setOpenExternalLinks(False)
        self.report_view.setPlaceholderText("The selected case's report appears here.")
        self.addWidget(self.results_list)
        self.addWidget(self.report_view)
        self.setStretchFactor(0, 3)
        self.setStretchFactor(1, 2)
        self.results_list.currentRowChanged.connect(self._on_row_changed)
        self.results_list.itemDoubleClicked.connect(self._on_double_click)

    @property
    def rows(self) -> list[CaseRow]:
        return list(self._rows)

    def fill(self, node: NodeSettings, generation: int) -> None:
        """Show the model's cases, then fetch their thumbnails and the first report."""
        self.cancel()
        self._node = node
        self.results_list.blockSignals(True)
        self.results_list.clear()
        self._rows = []
        self._thumbnail_count = 0
        for case in self.model.cases:
            row = CaseRow(case, self.model)
            row.feedback_clicked.connect(self.feedback_clicked)
            row.open_clicked.connect(self.open_clicked)
            item = QListWidgetItem()
            item.setSizeHint(row.sizeHint())
            self.results_list.addItem(item)
            self.results_list.setItemWidget(item, row)
            self._rows.append(row)
        self.results_list.blockSignals(False)
        if self.model.cases:
            self.results_list.setCurrentRow(0)
            self._on_row_changed(0)
        else:
            self.report_view.clear()
        self._thumb_task = self.runner.start(
            partial(node_tasks.fetch_thumbnails, node, self.model.cases, THUMBNAIL_SIZE),
            done=self._on_thumbnails_done, failed=self._on_thumbnails_done,
            progress=self._on_thumbnail, generation=generation)

    def refresh(self) -> None:
        """Redraw the rows (marks, hidden identities) from the model."""
        for row in self._rows:
            row.refresh(self.model)

    def cancel(self) -> None:
        if self._thumb_task is not None:
            self._thumb_task.cancel()

    def _on_thumbnail(self, answer: TaskAnswer) -> None:
        index, data = answer.value
        if (answer.generation == self.model.generation and index < len(self._rows)
                and self._rows[index].set_thumbnail(data)):
            self._thumbnail_count += 1

    def _on_thumbnails_done(self, answer: TaskAnswer) -> None:
        if answer.generation == self.model.generation:
            self.thumbnails_done.emit(self._thumbnail_count)

    def _on_row_changed(self, index: int) -> None:
        case = self.model.select(index)
        if case is None:
            self.report_view.clear()
            return
        self.report_view.setHtml(self.model.report_html(case))
        study = case.study_instance_uid
        if study in self.model.reports:
            self.report_shown.emit(study)
            return
        if self._node is not None:
            self.runner.start(partial(node_tasks.fetch_report, self._node, study),
                              done=self._on_report, failed=self._on_report_failed,
                              generation=self.model.generation, context=study)

    def _on_report(self, answer: TaskAnswer) -> None:
        study: str = answer.context
        if answer.value is not None and answer.value.text:
            self.model.reports[study] = answer.value.text
        selected = self.model.selected_case
        if selected is not None and selected.study_instance_uid == study:
            self.report_view.setHtml(self.model.report_html(selected))
            self.report_shown.emit(study)

    def _on_report_failed(self, answer: TaskAnswer) -> None:
        selected = self.model.selected_case
        if selected is not None and selected.study_instance_uid == answer.context:
            self.report_shown.emit(answer.context)  # the excerpt stays

    def _on_double_click(self, item: QListWidgetItem) -> None:
        index = self.results_list.row(item)
        if 0 <= index < len(self._rows):
            self.open_clicked.emit(self._rows[index].case.study_instance_uid)

    def shutdown(self, timeout_ms: int) -> None:
        self.runner.shutdown(timeout_ms)
