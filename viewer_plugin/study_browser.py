"""The study browser: find a study on the node by patient name or ID, accession number,
date range and modality, a page at a time, and open it.

It asks the node over QIDO-RS (:meth:`viewer_plugin.client.PrecedentClient.search_study_page`)
on a worker thread; what it asks is a :class:`~viewer_plugin.study_search.StudySearch`.
The host viewer shows it in a dialog (File ▸ Find study on node…) and when it is
started without a study; another host can embed :class:`StudyBrowser` as a widget and
listen to :attr:`StudyBrowser.study_chosen`.
"""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QGridLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer_plugin import node_tasks
from viewer_plugin._layout import STRETCH, row
from viewer_plugin._panel_parts import (
    Banner,
    chosen_dates,
    chosen_modality,
    date_range,
    modality_combo,
)
from viewer_plugin._worker import Task, TaskAnswer, TaskRunner
from viewer_plugin.connection import NodeSettings
from viewer_plugin.errors import PrecedentError, QueryCancelled
from viewer_plugin.study_search import StudyPage, StudyRow, StudySearch

__all__ = ["COLUMNS", "StudyBrowser", "StudyBrowserDialog"]

COLUMNS = ("Patient", "Patient ID", "Date", "Accession", "Modality", "Description", "Instances")


def _cells(row: StudyRow) -> tuple[str, ...]:
    return (row.patient_display, row.patient_id, row.date_display, row.accession,
            row.modalities_display, row.description, str(row.instance_count or ""))


class StudyBrowser(QWidget):
    """Filters, one page of studies, paging and Open."""

    study_chosen = Signal(str)  # the Study Instance UID to open
    page_shown = Signal(int)  # rows on the page just shown
    search_failed = Signal(str)

    def __init__(self, node: NodeSettings | None = None, *, page_size: int = 25,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.node = node
        self.page_size = page_size
        self.page: StudyPage | None = None
        self.runner = TaskRunner(self)
        self._task: Task | None = None
        self._build()

    def _build(self) -> None:
        root = QVBoxLayout(self)
        self.patient_name_edit = QLineEdit()
        self.patient_name_edit.setPlaceholderText("family name first, e.g. doe jane")
        self.patient_id_edit = QLineEdit()
        self.accession_edit = QLineEdit()
        self.modality_combo = modality_combo()
        self.date_check, self.date_from, self.date_to = date_range(1)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        fields = QWidget()
        grid = QGridLayout(fields)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(QLabel("Patient name"), 0, 0)
        grid.addWidget(self.patient_name_edit, 0, 1)
        grid.addWidget(QLabel("Patient ID"), 0, 2)
        grid.addWidget(self.patient_id_edit, 0, 3)
        grid.addWidget(QLabel("Accession"), 0, 4)
        grid.addWidget(self.accession_edit, 0, 5)
        grid.addWidget(QLabel("Modality"), 1, 0)
        grid.addWidget(self.modality_combo, 1, 1)
        grid.addWidget(row(self.date_check, self.date_from, QLabel("to"), self.date_to,
                           STRETCH), 1, 2, 1, 3)
        grid.addWidget(self.search_button, 1, 5)
        root.addWidget(fields)

        self.banner = Banner()
        root.addWidget(self.banner)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        root.addWidget(self.table, 1)

        self.previous_button = QPushButton("◀ Previous")
        self.page_label = QLabel("Search the node for a study.")
        self.next_button = QPushButton("Next ▶")
        self.open_button = QPushButton("Open")
        self.open_button.setEnabled(False)
        root.addWidget(row(self.previous_button, (self.page_label, 1), self.next_button,
                           self.open_button))
        self.previous_button.setEnabled(False)
        self.next_button.setEnabled(False)

        for edit in (self.patient_name_edit, self.patient_id_edit, self.accession_edit):
            edit.returnPressed.connect(self.search)
        self.search_button.clicked.connect(self.search)
        self.previous_button.clicked.connect(self.previous_page)
        self.next_button.clicked.connect(self.next_page)
        self.open_button.clicked.connect(self.open_selected)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.cellDoubleClicked.connect(self._on_double_click)

    # ------------------------------------------------------------ searching

    def set_node(self, node: NodeSettings) -> None:
        self.node = node

    def current_search(self) -> StudySearch:
        """The search the fields describe (first page); ``ValueError`` names a bad field."""
        lo, hi = chosen_dates(self.date_check, self.date_from, self.date_to)
        return StudySearch(
            patient_name=self.patient_name_edit.text(), patient_id=self.patient_id_edit.text(),
            accession=self.accession_edit.text(),
            modality=chosen_modality(self.modality_combo),
            date_from=lo, date_to=hi, page_size=self.page_size)

    def set_search(self, search: StudySearch) -> None:
        """Fill the fields from ``search`` (e.g. an accession number from the command line)."""
        self.patient_name_edit.setText(search.patient_name)
        self.patient_id_edit.setText(search.patient_id)
        self.accession_edit.setText(search.accession)
        self.modality_combo.setCurrentText(search.modality or "Any")
        self.date_check.setChecked(bool(search.date_from or search.date_to))
        if search.date_from:
            d = search.date_from
            self.date_from.setDate(QDate(d.year, d.month, d.day))
        if search.date_to:
            d = search.date_to
            self.date_to.setDate(QDate(d.year, d.month, d.day))

    def search(self) -> None:
        """Search with the fields, first page."""
        try:
            search = self.current_search()
        except ValueError as exc:
            self.banner.say(f"The search is not valid: {exc}",
                            "Correct the field and search again.")
            return
        self.show_page_of(search)

    def next_page(self) -> None:
        if self.page is not None and self.page.has_more:
            self.show_page_of(self.page.search.next_page())

    def previous_page(self) -> None:
        if self.page is not None and self.page.search.page > 0:
            self.show_page_of(self.page.search.previous_page())

    def show_page_of(self, search: StudySearch) -> None:
        """Ask the node for one page of ``search``."""
        if self.node is None:
            self.banner.say("No node is set.", "Enter the node URL in the Find-similar panel.")
            return
        if self._task is not None:
            self._task.cancel()
        self.banner.clear_text()
        self.page_label.setText("Searching…")
        self._task = self.runner.start(partial(node_tasks.search_studies, self.node, search),
                                       done=self._on_page, failed=self._on_failed)

    def _on_page(self, answer: TaskAnswer) -> None:
        page: StudyPage = answer.value
        self.page = page
        self.table.setRowCount(0)
        for r, study in enumerate(page.rows):
            self.table.insertRow(r)
            for c, text in enumerate(_cells(study)):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, study.study_instance_uid)
                item.setToolTip(study.study_instance_uid)
                self.table.setItem(r, c, item)
        self.page_label.setText(page.range_text)
        self.previous_button.setEnabled(page.search.page > 0)
        self.next_button.setEnabled(page.has_more)
        if page.rows:
            self.table.selectRow(0)
        self._on_selection()
        self.page_shown.emit(len(page.rows))

    def _on_failed(self, answer: TaskAnswer) -> None:
        error: PrecedentError = answer.value
        if isinstance(error, QueryCancelled):
            return
        self.page_label.setText("")
        self.banner.say(error.message, error.hint)
        self.search_failed.emit(str(error))

    # ------------------------------------------------------------ choosing

    def selected_study(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        uid = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return str(uid) if uid else None

    def _on_selection(self) -> None:
        self.open_button.setEnabled(self.selected_study() is not None)

    def _on_double_click(self, _row: int, _column: int) -> None:
        self.open_selected()

    def open_selected(self) -> None:
        uid = self.selected_study()
        if uid:
            self.study_chosen.emit(uid)

    def shutdown(self, timeout_ms: int = 2000) -> None:
        self.runner.shutdown(timeout_ms)


class StudyBrowserDialog(QDialog):
    """The browser in a window of its own (not modal: the viewer stays usable)."""

    def __init__(self, node: NodeSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Find a study on the node")
        self.browser = StudyBrowser(node)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.browser)
        self.resize(980, 560)
        self.browser.study_chosen.connect(self.hide)
