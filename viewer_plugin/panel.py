"""The "Find similar" panel: a QWidget a host viewer docks beside its images.

It renders a :class:`~viewer_plugin.model.PanelModel` and runs every network
call on a worker thread (:mod:`viewer_plugin._worker`); a newer query cancels
the older one and the older answer is dropped by its generation number. Errors
appear inline, in plain words, with what to do. Settings (node URL, token,
defaults) persist in ``QSettings``; the token field is always masked.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from PySide6.QtCore import QDate, QSettings, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
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
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from viewer_plugin._gc import install_ui_thread_gc
from viewer_plugin._worker import TaskRunner
from viewer_plugin.cases import KosResult, Report, SimilarCase, SimilarResult
from viewer_plugin.client import (
    CancelToken,
    LevelValues,
    NodeSettings,
    PrecedentClient,
    pick_representative,
)
from viewer_plugin.contract import ViewerHost
from viewer_plugin.errors import NotFound, PrecedentError, QueryCancelled
from viewer_plugin.model import (
    FeedbackValues,
    PanelModel,
    QueryKindValues,
    QueryRequest,
    QueryState,
)

__all__ = ["FindSimilarPanel", "run_query"]

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 96
MODALITIES = ["", "CT", "MR", "CR", "DX", "MG", "US", "PT", "NM", "XA", "RF", "OT"]
LEVEL_LABELS = [("Study", LevelValues.STUDY), ("Series", LevelValues.SERIES),
                ("Image", LevelValues.INSTANCE)]
DEFAULT_URL = "http://127.0.0.1:8042"


# ------------------------------------------------------------------ worker side


def _first(item: dict[str, Any], tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or []
    return str(values[0]) if values else ""


def run_query(client: PrecedentClient, request: QueryRequest) -> SimilarResult:
    """Run one panel query with ``client`` (on a worker thread; no Qt)."""
    query = request.query
    if request.kind is QueryKindValues.TEXT:
        return client.similar_to_text(request.text, query=query, hybrid=request.hybrid)
    if request.kind is QueryKindValues.UPLOAD:
        return client.similar_to_image(pick_representative(request.datasets), query=query)
    level = LevelValues(query.level)
    study = request.study_uid
    if level is LevelValues.STUDY:
        return client.similar_to_study(study, query=query)
    series, sop = request.series_uid, request.sop_uid
    if not series:  # the largest series of the study
        found = client.search_series(study)
        found.sort(key=lambda s: int(_first(s, "00201209") or 0), reverse=True)
        if not found:
            raise _no_images()
        series = _first(found[0], "0020000E")
    if level is LevelValues.SERIES:
        return client.similar_to_series(study, series, query=query)
    if not sop:  # the middle image of the series
        instances = client.search_instances(study, series)
        instances.sort(key=lambda i: int(_first(i, "00200013") or 0))
        if not instances:
            raise _no_images()
        sop = _first(instances[len(instances) // 2], "00080018")
    return client.similar_to_instance(study, series, sop, query=query)


def _no_images() -> PrecedentError:
    return NotFound("The node has no images for this study.", status=404)


def _fetch_thumbnails(client: PrecedentClient, cases: Sequence[SimilarCase],
                      progress: Callable[[Any], None]) -> None:
    for index, case in enumerate(cases):
        if not case.best_instance_uid:
            continue
        try:
            series = case.best_series_uid or client.series_of_instance(
                case.study_instance_uid, case.best_instance_uid)
            data = client.thumbnail(case.study_instance_uid, series, case.best_instance_uid,
                                    size=THUMBNAIL_SIZE)
        except QueryCancelled:
            raise
        except PrecedentError as exc:  # one missing thumbnail is not an error for the query
            log.info("event=thumbnail_failed rank=%d reason=%s", case.rank, exc.message)
            continue
        progress((index, data))


# ------------------------------------------------------------------ widgets


class _CaseRow(QFrame):
    """One result: thumbnail, score and details, thumbs up / down, open."""

    def __init__(self, panel: FindSimilarPanel, case: SimilarCase) -> None:
        super().__init__()
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

        text = QVBoxLayout()
        self.title = QLabel()
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.patient = QLabel()
        self.patient.setStyleSheet("color:#666;")
        self.labels = QLabel()
        self.labels.setStyleSheet("color:#2a6;")
        for w in (self.title, self.details, self.patient, self.labels):
            w.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
            w.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            w.setMinimumWidth(60)
            text.addWidget(w)
        text.addStretch(1)
        layout.addLayout(text, 1)

        buttons = QVBoxLayout()
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
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)

        self.thumbs_up.clicked.connect(
            lambda: panel.give_feedback(case.uid, FeedbackValues.POSITIVE))
        self.thumbs_down.clicked.connect(
            lambda: panel.give_feedback(case.uid, FeedbackValues.NEGATIVE))
        self.open_button.clicked.connect(lambda: panel.open_case(case))
        self.refresh(panel.model)

    def refresh(self, model: PanelModel) -> None:
        case = self.case
        score = "–" if case.score != case.score else f"{case.score:.3f}"
        self.title.setText(f"<b>#{case.rank or '?'}</b> &nbsp; similarity <b>{score}</b>")
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


class FindSimilarPanel(QWidget):
    """Find cases similar to the host's current study; show them with their reports.

    ``host``: a :class:`~viewer_plugin.contract.ViewerHost` (may be set later with
    :meth:`set_host`). ``settings``: where URL, token and defaults persist
    (default ``QSettings("Precedent", "Viewer")``).
    """

    results_ready = Signal(int)  # number of cases shown
    query_failed = Signal(str)  # the inline error text
    busy_changed = Signal(bool)
    thumbnails_done = Signal(int)  # number of thumbnails shown
    report_shown = Signal(str)  # study UID whose full report is in the pane
    kos_sent = Signal(str)  # the status line after Send to PACS

    def __init__(
        self,
        *,
        host: ViewerHost | None = None,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        install_ui_thread_gc()  # widgets must never be collected off the UI thread
        self.setObjectName("FindSimilarPanel")
        self.host = host
        self.settings = settings if settings is not None else QSettings("Precedent", "Viewer")
        self.model = PanelModel(self._load_state())
        self.runner = TaskRunner(self)
        self._query_task: Any = None
        self._thumb_task: Any = None
        self._rows: list[_CaseRow] = []
        self._thumbnail_count = 0
        self._build()
        self._load_node_settings()
        self._show_state()
        self._connect_defaults()

    # ---------------------------------------------------------------- building

    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)

        # node connection (collapsible)
        self.node_box = QToolButton()
        self.node_box.setText("Node connection")
        self.node_box.setCheckable(True)
        self.node_box.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.node_box.setAutoRaise(True)
        self._node_fields = QFrame()
        self._node_fields.setFrameShape(QFrame.Shape.StyledPanel)
        node_form = QFormLayout(self._node_fields)
        node_form.setContentsMargins(6, 4, 6, 4)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText(DEFAULT_URL)
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("access token (kept hidden)")
        self.timeout_spin = QDoubleSpinBox()
        self.timeout_spin.setRange(0.5, 300.0)
        self.timeout_spin.setSuffix(" s")
        node_form.addRow("URL", self.url_edit)
        node_form.addRow("Token", self.token_edit)
        node_form.addRow("Timeout", self.timeout_spin)
        self.url_edit.editingFinished.connect(self.save_node_settings)
        self.url_edit.editingFinished.connect(self.refresh_destinations)
        self.token_edit.editingFinished.connect(self.save_node_settings)
        self.timeout_spin.editingFinished.connect(self.save_node_settings)
        self.node_box.toggled.connect(self._toggle_node_box)
        root.addWidget(self.node_box)
        root.addWidget(self._node_fields)

        # query controls
        controls = QGroupBox("Query")
        grid = QFormLayout(controls)
        row1 = QHBoxLayout()
        self.level_combo = QComboBox()
        for label, level in LEVEL_LABELS:
            self.level_combo.addItem(label, level.value)
        self.limit_spin = QSpinBox()
        self.limit_spin.setRange(1, 100)
        self.modality_combo = QComboBox()
        self.modality_combo.setEditable(True)
        for m in MODALITIES:
            self.modality_combo.addItem(m or "Any", m)
        row1.addWidget(QLabel("Level"))
        row1.addWidget(self.level_combo)
        row1.addWidget(QLabel("Cases"))
        row1.addWidget(self.limit_spin)
        row1.addWidget(QLabel("Modality"))
        row1.addWidget(self.modality_combo)
        grid.addRow(row1)

        row2 = QHBoxLayout()
        self.date_check = QCheckBox("Dates")
        self.date_from = QDateEdit(QDate.currentDate().addYears(-5))
        self.date_to = QDateEdit(QDate.currentDate())
        for d in (self.date_from, self.date_to):
            d.setCalendarPopup(True)
            d.setDisplayFormat("yyyy-MM-dd")
            d.setEnabled(False)
        self.date_check.toggled.connect(self.date_from.setEnabled)
        self.date_check.toggled.connect(self.date_to.setEnabled)
        row2.addWidget(self.date_check)
        row2.addWidget(self.date_from)
        row2.addWidget(QLabel("to"))
        row2.addWidget(self.date_to)
        row2.addStretch(1)
        grid.addRow(row2)

        row3 = QHBoxLayout()
        self.exclude_check = QCheckBox("Exclude this patient")
        self.hide_check = QCheckBox("Hide patient names and IDs")
        row3.addWidget(self.exclude_check)
        row3.addWidget(self.hide_check)
        row3.addStretch(1)
        grid.addRow(row3)

        row4 = QHBoxLayout()
        self.text_edit = QLineEdit()
        self.text_edit.setPlaceholderText("Search by words, e.g. “pneumothorax right apex”")
        self.hybrid_check = QCheckBox("+ reports")
        self.hybrid_check.setToolTip("Hybrid: also search the reports' text (BM25)")
        self.text_button = QPushButton("Search text")
        row4.addWidget(self.text_edit, 1)
        row4.addWidget(self.hybrid_check)
        row4.addWidget(self.text_button)
        grid.addRow(row4)

        row5 = QHBoxLayout()
        self.find_button = QPushButton("Find similar")
        self.find_button.setDefault(True)
        self.find_button.setToolTip("Find cases similar to the study on screen")
        self.cancel_button = QPushButton("Cancel")
        self.clear_marks_button = QPushButton("Clear marks")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumHeight(12)
        self.progress.setTextVisible(False)
        row5.addWidget(self.find_button)
        row5.addWidget(self.cancel_button)
        row5.addWidget(self.clear_marks_button)
        row5.addWidget(self.progress, 1)
        grid.addRow(row5)
        root.addWidget(controls)

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setObjectName("errorLabel")
        self.error_label.setStyleSheet(
            "QLabel#errorLabel { background:#fde2e1; color:#7a1712; border:1px solid #e8a09a;"
            " border-radius:4px; padding:6px; }")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.error_label)

        self.consensus_label = QLabel()
        self.consensus_label.setObjectName("consensusLabel")
        self.consensus_label.setStyleSheet("font-weight:bold; font-size:14px; padding:2px;")
        root.addWidget(self.consensus_label)
        self.consensus_label.setVisible(False)

        splitter = QSplitter(Qt.Orientation.Vertical)
        self.results_list = QListWidget()
        self.results_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results_list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.results_list.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.report_view = QTextBrowser()
        self.report_view.setOpenExternalLinks(False)
        self.report_view.setPlaceholderText("The selected case's report appears here.")
        splitter.addWidget(self.results_list)
        splitter.addWidget(self.report_view)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        root.addWidget(splitter, 1)

        send_row = QHBoxLayout()
        self.destination_combo = QComboBox()
        self.destination_combo.setEditable(True)
        self.destination_combo.setToolTip("The PACS AE title to send the similar cases to")
        destination_edit = self.destination_combo.lineEdit()
        if destination_edit is not None:
            destination_edit.setPlaceholderText("destination AE (node default)")
        self.send_button = QPushButton("Send to PACS")
        self.send_button.setToolTip(
            "Store these similar cases as a Key Object Selection note and send it to the PACS")
        send_row.addWidget(QLabel("To"))
        send_row.addWidget(self.destination_combo, 1)
        send_row.addWidget(self.send_button)
        root.addLayout(send_row)

        self.status_label = QLabel()
        self.status_label.setStyleSheet("color:#555;")
        self.status_label.setWordWrap(True)
        root.addWidget(self.status_label)

        self.find_button.clicked.connect(self.find_similar)
        self.text_button.clicked.connect(lambda: self.search_text())
        self.text_edit.returnPressed.connect(lambda: self.search_text())
        self.cancel_button.clicked.connect(self.cancel)
        self.clear_marks_button.clicked.connect(self.clear_feedback)
        self.send_button.clicked.connect(self.send_to_pacs)
        self.results_list.currentRowChanged.connect(self._on_row_changed)
        self.results_list.itemDoubleClicked.connect(
            lambda item: self.open_case(self._rows[self.results_list.row(item)].case))
        self.results_list.setStyleSheet(
            "QListWidget::item { border-bottom: 1px solid #ddd; }"
            "QListWidget::item:selected { background: #d6e6fb; }")
        self.results_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.results_list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMinimumWidth(420)

    def _connect_defaults(self) -> None:
        """Save the defaults when the user changes them (after the saved ones are shown)."""
        self.hide_check.toggled.connect(self._on_hide_toggled)
        for signal in (self.level_combo.currentIndexChanged, self.limit_spin.valueChanged,
                       self.exclude_check.toggled, self.hybrid_check.toggled):
            signal.connect(self._save_defaults)

    def _toggle_node_box(self, on: bool) -> None:
        self._node_fields.setVisible(on)
        self.node_box.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    # ---------------------------------------------------------------- settings

    def _load_state(self) -> QueryState:
        s = self.settings

        def flag(key: str, default: bool) -> bool:
            value = s.value(key, default)
            return value if isinstance(value, bool) else str(value).lower() in ("true", "1")

        try:
            level = LevelValues(str(s.value("defaults/level", LevelValues.STUDY.value)))
        except ValueError:
            level = LevelValues.STUDY
        try:
            limit = min(100, max(1, int(str(s.value("defaults/limit", 10)))))
        except (TypeError, ValueError):
            limit = 10
        return QueryState(
            level=level, limit=limit,
            exclude_patient=flag("defaults/exclude_patient", True),
            hide_identity=flag("defaults/hide_identity", True),
            hybrid=flag("defaults/hybrid", True),
        )

    def _load_node_settings(self) -> None:
        self.url_edit.setText(str(self.settings.value("node/url", DEFAULT_URL)))
        self.token_edit.setText(str(self.settings.value("node/token", "") or ""))
        try:
            timeout = float(str(self.settings.value("node/timeout", 20.0)))
        except (TypeError, ValueError):
            timeout = 20.0
        self.timeout_spin.setValue(timeout)
        self.node_box.setChecked(not self.settings.value("node/url"))
        self._toggle_node_box(self.node_box.isChecked())
        self.destination_combo.setEditText(str(self.settings.value("kos/destination", "")))

    def save_node_settings(self) -> None:
        self.settings.setValue("node/url", self.url_edit.text().strip() or DEFAULT_URL)
        self.settings.setValue("node/token", self.token_edit.text())
        self.settings.setValue("node/timeout", self.timeout_spin.value())
        self.settings.sync()

    def _save_defaults(self, *_: object) -> None:
        self._read_controls()
        st = self.model.state
        self.settings.setValue("defaults/level", st.level.value)
        self.settings.setValue("defaults/limit", st.limit)
        self.settings.setValue("defaults/exclude_patient", st.exclude_patient)
        self.settings.setValue("defaults/hide_identity", st.hide_identity)
        self.settings.setValue("defaults/hybrid", st.hybrid)

    def set_node(self, url: str, token: str = "", *, timeout: float | None = None) -> None:
        """Point the panel at a node (and remember it)."""
        self.url_edit.setText(url)
        self.token_edit.setText(token)
        if timeout is not None:
            self.timeout_spin.setValue(timeout)
        self.save_node_settings()
        self.node_box.setChecked(False)
        self.refresh_destinations()

    def node_settings(self) -> NodeSettings:
        return NodeSettings(url=self.url_edit.text().strip() or DEFAULT_URL,
                            token=self.token_edit.text().strip(),
                            timeout=self.timeout_spin.value())

    def set_host(self, host: ViewerHost | None) -> None:
        self.host = host

    # ---------------------------------------------------------------- state <-> controls

    def _show_state(self) -> None:
        st = self.model.state
        self.level_combo.setCurrentIndex(max(0, self.level_combo.findData(st.level.value)))
        self.limit_spin.setValue(st.limit)
        self.exclude_check.setChecked(st.exclude_patient)
        self.hide_check.setChecked(st.hide_identity)
        self.hybrid_check.setChecked(st.hybrid)
        self._show_busy(False)
        self._show_error("")

    def _read_controls(self) -> None:
        st = self.model.state
        st.level = LevelValues(self.level_combo.currentData() or LevelValues.STUDY.value)
        st.limit = self.limit_spin.value()
        modality = self.modality_combo.currentText().strip()
        st.modality = "" if modality.lower() == "any" else modality.upper()
        if self.date_check.isChecked():
            lo, hi = _pydate(self.date_from.date()), _pydate(self.date_to.date())
            st.date_from, st.date_to = min(lo, hi), max(lo, hi)
        else:
            st.date_from = st.date_to = None
        st.exclude_patient = self.exclude_check.isChecked()
        st.hide_identity = self.hide_check.isChecked()
        st.hybrid = self.hybrid_check.isChecked()
        st.text = self.text_edit.text()

    def _show_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self.busy_changed.emit(busy)

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    @property
    def busy(self) -> bool:
        return self.model.busy

    # ---------------------------------------------------------------- queries

    def find_similar(self) -> int:
        """Find cases similar to the host's current study; returns the query's generation."""
        study = self.host.current_study() if self.host is not None else None
        if study is None or (not isinstance(study, str) and len(study) == 0):
            self._show_error("No study is open. Open a study in the viewer, then click "
                             "Find similar — or type words and click Search text.")
            return self.model.generation
        series_uid = sop_uid = ""
        current_image = getattr(self.host, "current_image", None)
        if isinstance(study, str) and callable(current_image):
            image = current_image()
            if image:
                series_uid, sop_uid = image
        self._read_controls()
        if isinstance(study, str):
            request = self.model.begin_query(study=study, series_uid=series_uid, sop_uid=sop_uid)
        else:
            request = self.model.begin_query(study=list(study))
        return self._start(request)

    def search_text(self, text: str | None = None) -> int:
        """Find cases by words (the text box, or ``text``)."""
        if text is not None:
            self.text_edit.setText(text)
        self._read_controls()
        if not self.model.state.text.strip():
            self._show_error("Type a few words to search by text.")
            return self.model.generation
        return self._start(self.model.begin_query(study=None))

    def give_feedback(self, uid: str, value: FeedbackValues | str) -> int:
        """Mark a result as more / less like this, and re-run the query."""
        self.model.mark(uid, value)
        for row in self._rows:
            row.refresh(self.model)
        self._read_controls()
        request = self.model.rerun()
        return self._start(request) if request is not None else self.model.generation

    def clear_feedback(self) -> None:
        self.model.clear_feedback()
        for row in self._rows:
            row.refresh(self.model)

    def cancel(self) -> None:
        """Cancel the running query (its answer, if it still comes, is dropped)."""
        for task in (self._query_task, self._thumb_task):
            if task is not None:
                task.cancel()
        if self.model.busy:
            self.model.cancel()
            self._show_busy(False)
            self.status_label.setText("Cancelled.")

    def _start(self, request: QueryRequest) -> int:
        # a newer query supersedes the older: cancel it, its answer will be stale anyway
        for task in (self._query_task, self._thumb_task):
            if task is not None:
                task.cancel()
        self._show_error("")
        self._show_busy(True)
        self.status_label.setText("Searching…")
        settings = self.node_settings()
        log.debug("event=similar_query generation=%d kind=%s level=%s", request.generation,
                  request.kind.value, request.query.level)

        def work(cancel: CancelToken, _progress: Callable[[Any], None]) -> SimilarResult:
            with PrecedentClient(settings, cancel=cancel) as client:
                return run_query(client, request)

        self._query_task = self.runner.start(
            request.generation, work, done=self._on_result, failed=self._on_failed)
        return request.generation

    def _on_result(self, generation: int, result: SimilarResult) -> None:
        if not self.model.accept(generation, result):
            return  # superseded
        self._show_busy(False)
        self._fill_results()
        n = len(result.cases)
        self.status_label.setText(f"{n} similar case{'s' if n != 1 else ''}." if n
                                  else "No similar cases found with these filters.")
        self.results_ready.emit(n)
        self._load_thumbnails(generation)

    def _on_failed(self, generation: int, error: PrecedentError) -> None:
        if isinstance(error, QueryCancelled) or not self.model.fail(generation, str(error)):
            return
        self._show_busy(False)
        self.status_label.setText("")
        self._show_error(f"<b>{_html(error.message)}</b><br/>{_html(error.hint)}")
        self.query_failed.emit(str(error))

    # ---------------------------------------------------------------- results

    def _fill_results(self) -> None:
        self.results_list.blockSignals(True)
        self.results_list.clear()
        self._rows = []
        self._thumbnail_count = 0
        for case in self.model.cases:
            row = _CaseRow(self, case)
            item = QListWidgetItem()
            item.setSizeHint(row.sizeHint())
            self.results_list.addItem(item)
            self.results_list.setItemWidget(item, row)
            self._rows.append(row)
        self.results_list.blockSignals(False)
        self.consensus_label.setText(self.model.consensus_line)
        self.consensus_label.setVisible(bool(self.model.consensus_line))
        if self.model.cases:
            self.results_list.setCurrentRow(0)
            self._on_row_changed(0)
        else:
            self.report_view.clear()

    def _on_hide_toggled(self, hide: bool) -> None:
        self.model.state.hide_identity = hide
        for row in self._rows:
            row.refresh(self.model)
        self._save_defaults()

    def row_widget(self, index: int) -> _CaseRow:
        """The widget of result ``index`` (its buttons, thumbnail)."""
        return self._rows[index]

    @property
    def case_uids(self) -> list[str]:
        return [c.uid for c in self.model.cases]

    def _load_thumbnails(self, generation: int) -> None:
        cases = list(self.model.cases)
        settings = self.node_settings()

        def work(cancel: CancelToken, progress: Callable[[Any], None]) -> int:
            with PrecedentClient(settings, cancel=cancel) as client:
                _fetch_thumbnails(client, cases, progress)
            return len(cases)

        def on_progress(gen: int, item: tuple[int, bytes]) -> None:
            index, data = item
            if (gen == self.model.generation and index < len(self._rows)
                    and self._rows[index].set_thumbnail(data)):
                self._thumbnail_count += 1

        def on_done(gen: int, _n: int) -> None:
            if gen == self.model.generation:
                self.thumbnails_done.emit(self._thumbnail_count)

        self._thumb_task = self.runner.start(
            generation, work, done=on_done, failed=lambda g, e: on_done(g, 0),
            progress=on_progress)

    def _on_row_changed(self, index: int) -> None:
        case = self.model.select(index)
        if case is None:
            self.report_view.clear()
            return
        self.report_view.setHtml(self.model.report_html(case))
        if case.study_instance_uid in self.model.reports:
            self.report_shown.emit(case.study_instance_uid)
            return
        settings = self.node_settings()
        study = case.study_instance_uid

        def work(cancel: CancelToken, _p: Callable[[Any], None]) -> Report | None:
            with PrecedentClient(settings, cancel=cancel) as client:
                return client.report(study)

        def done(_gen: int, report: Report | None) -> None:
            if report is not None and report.text:
                self.model.reports[study] = report.text
            selected = self.model.selected_case
            if selected is not None and selected.study_instance_uid == study:
                self.report_view.setHtml(self.model.report_html(selected))
                self.report_shown.emit(study)

        def failed(_gen: int, error: PrecedentError) -> None:
            selected = self.model.selected_case
            if selected is not None and selected.study_instance_uid == study:
                self.report_shown.emit(study)  # the excerpt stays

        self.runner.start(self.model.generation, work, done=done, failed=failed)

    def open_case(self, case: SimilarCase) -> None:
        """Ask the host to show a retrieved case."""
        if self.host is None:
            self.status_label.setText("This viewer cannot open cases.")
            return
        self.host.open_study(case.study_instance_uid)

    # ---------------------------------------------------------------- KOS

    def send_to_pacs(self) -> None:
        """Store the answer as a Key Object Selection note and send it to the destination."""
        study = self.host.current_study() if self.host is not None else None
        if not isinstance(study, str):
            self._show_error("Send to PACS works for studies the node has. "
                             "Send this study to the node first.")
            return
        self._read_controls()
        query = self.model.state.to_query()
        destination = self.destination_combo.currentText().strip() or None
        if destination:
            self.settings.setValue("kos/destination", destination)
        settings = self.node_settings()
        self.status_label.setText("Sending to PACS…")
        self.send_button.setEnabled(False)

        def work(cancel: CancelToken, _p: Callable[[Any], None]) -> KosResult:
            with PrecedentClient(settings, cancel=cancel) as client:
                return client.send_kos(study, query=query, destination=destination)

        def done(_gen: int, result: KosResult) -> None:
            self.send_button.setEnabled(True)
            where = f"sent to {result.sent_to}" if result.sent_to else "stored on the node"
            text = f"Key Object Selection {where}."
            self.status_label.setText(text)
            self.kos_sent.emit(text)

        def failed(_gen: int, error: PrecedentError) -> None:
            self.send_button.setEnabled(True)
            self.status_label.setText("")
            self._show_error(f"<b>Send to PACS failed.</b> {_html(error.message)}<br/>"
                             f"{_html(error.hint)}")
            self.kos_sent.emit(str(error))

        self.runner.start(0, work, done=done, failed=failed)

    def refresh_destinations(self) -> None:
        """Ask the node which destinations it knows (fills the chooser)."""
        settings = self.node_settings()

        def work(cancel: CancelToken, _p: Callable[[Any], None]) -> list[str]:
            with PrecedentClient(settings, cancel=cancel) as client:
                return client.destinations()

        def done(_gen: int, titles: list[str]) -> None:
            current = self.destination_combo.currentText()
            self.destination_combo.clear()
            self.destination_combo.addItems(titles)
            self.destination_combo.setEditText(current or (titles[0] if titles else ""))

        self.runner.start(0, work, done=done, failed=lambda g, e: None)

    # ---------------------------------------------------------------- lifetime

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Cancel running calls and wait for the worker threads (call before closing)."""
        self.model.cancel()
        self.runner.shutdown(timeout_ms)

    def closeEvent(self, event: Any) -> None:
        self.shutdown(2000)
        super().closeEvent(event)


def _html(text: str) -> str:
    return html.escape(text)


def _pydate(d: QDate) -> date:
    return date(d.year(), d.month(), d.day())
