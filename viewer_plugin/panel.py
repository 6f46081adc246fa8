"""The "Find similar" panel: a QWidget a host viewer docks beside its images.

It renders a :class:`~viewer_plugin.model.PanelModel` and runs every network call
(:mod:`viewer_plugin.node_tasks`) on a worker thread (:mod:`viewer_plugin._worker`);
a newer query cancels the older one and the older answer is dropped by its generation
number. Errors appear inline in a banner, in plain words, with what to do. Settings
(node URL, token, defaults) persist in ``QSettings``; the token field is always masked.

A guest in its host: the panel never touches process-wide state, holds its host
weakly when the host is a ``QObject``, connects signals only to bound methods (never
to lambdas holding ``self``), and its worker functions carry plain data only, so no
Qt object is ever part of a Python reference cycle (see :mod:`viewer_plugin._worker`).

This module is the panel's composition root, and longer than most (~450 lines) for
that reason: the parts live in their own modules (:mod:`~viewer_plugin._panel_parts`,
:mod:`~viewer_plugin._results_view`, :mod:`~viewer_plugin._kos_bar`,
:mod:`~viewer_plugin._case_row`), and what stays here is their wiring to the model and
the worker plus the public API a host calls (query, feedback, send, settings, host).
"""

from __future__ import annotations

import logging
import weakref
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from viewer_plugin import _panel_settings, node_tasks
from viewer_plugin._case_row import CaseRow
from viewer_plugin._kos_bar import KosBar
from viewer_plugin._panel_parts import Banner, NodeBox, QueryControls, RefineBar
from viewer_plugin._results_view import ResultsView
from viewer_plugin._worker import Task, TaskAnswer, TaskRunner
from viewer_plugin.cases import SimilarCase, SimilarResult
from viewer_plugin.connection import DEFAULT_URL, NodeSettings
from viewer_plugin.contract import ViewerHost
from viewer_plugin.errors import PrecedentError, QueryCancelled
from viewer_plugin.model import FeedbackValues, PanelModel, QueryRequest
from viewer_plugin.node_tasks import run_query

__all__ = ["DEFAULT_URL", "FindSimilarPanel", "run_query"]

log = logging.getLogger(__name__)

_banner_html = Banner.html


class FindSimilarPanel(QWidget):
    """Find cases similar to the host's current study; show them with their reports.

    ``host``: a :class:`~viewer_plugin.contract.ViewerHost` (may be set later with
    :meth:`set_host`; a ``QObject`` host is held weakly). ``settings``: where URL,
    token and defaults persist (default ``QSettings("Precedent", "Viewer")``).
    """

    results_ready = Signal(int)  # number of cases shown
    query_failed = Signal(str)  # the inline error text
    busy_changed = Signal(bool)
    thumbnails_done = Signal(int)  # number of thumbnails shown
    report_shown = Signal(str)  # study UID whose full report is in the pane
    kos_sent = Signal(str)  # the status line after Send to PACS
    kos_confirm_needed = Signal(str)  # the warning: a KOS was already sent for this study

    def __init__(
        self,
        *,
        host: ViewerHost | None = None,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("FindSimilarPanel")
        self._host: Any = None
        self.set_host(host)
        self.settings = settings if settings is not None else QSettings(
            "Precedent", "Viewer", self)
        self.model = PanelModel(_panel_settings.load_state(self.settings))
        self.runner = TaskRunner(self)
        self._query_task: Task | None = None
        self._build()
        self._load_node_settings()
        self._show_state()
        self._connect()

    # ---------------------------------------------------------------- building

    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        self.node_box = NodeBox()
        self.url_edit, self.token_edit, self.timeout_spin = (
            self.node_box.url_edit, self.node_box.token_edit, self.node_box.timeout_spin)
        self.min_support_spin = self.node_box.min_support_spin
        root.addWidget(self.node_box)

        c = self.controls = QueryControls()
        self.level_combo, self.limit_spin, self.modality_combo = (
            c.level_combo, c.limit_spin, c.modality_combo)
        self.date_check, self.date_from, self.date_to = c.date_check, c.date_from, c.date_to
        self.exclude_check, self.hide_check = c.exclude_check, c.hide_check
        self.text_edit, self.hybrid_check, self.text_button = (
            c.text_edit, c.hybrid_check, c.text_button)
        self.find_button, self.cancel_button, self.progress = (
            c.find_button, c.cancel_button, c.progress)
        root.addWidget(c)

        self.error_label = Banner()
        root.addWidget(self.error_label)
        self.consensus_label = QLabel()
        self.consensus_label.setObjectName("consensusLabel")
        self.consensus_label.setTextFormat(Qt.TextFormat.PlainText)
        self.consensus_label.setVisible(False)
        root.addWidget(self.consensus_label)
        self.order_label = QLabel()
        self.order_label.setWordWrap(True)
        self.order_label.setStyleSheet("color:#555; font-style:italic;")
        self.order_label.setVisible(False)
        root.addWidget(self.order_label)
        self.refine_bar = RefineBar()
        self.refine_label, self.refine_reset_button = (
            self.refine_bar.label, self.refine_bar.reset_button)
        root.addWidget(self.refine_bar)

        self.results = ResultsView(self.model)
        self.results_list, self.report_view = self.results.results_list, self.results.report_view
        root.addWidget(self.results, 1)
        self.kos_bar = KosBar()
        self.destination_combo, self.send_button = (
            self.kos_bar.destination_combo, self.kos_bar.send_button)
        root.addWidget(self.kos_bar)
        self.status_label = QLabel()
        self.status_label.setStyleSheet("color:#555;")
        self.status_label.setWordWrap(True)
        root.addWidget(self.status_label)
        self.setMinimumWidth(420)

    def _connect(self) -> None:
        self.url_edit.editingFinished.connect(self.save_node_settings)
        self.url_edit.editingFinished.connect(self.refresh_destinations)
        self.token_edit.editingFinished.connect(self.save_node_settings)
        self.timeout_spin.editingFinished.connect(self.save_node_settings)
        self.find_button.clicked.connect(self.find_similar)
        self.text_button.clicked.connect(self._search_typed_text)
        self.text_edit.returnPressed.connect(self._search_typed_text)
        self.cancel_button.clicked.connect(self.cancel)
        self.refine_reset_button.clicked.connect(self.reset_feedback)
        self.results.thumbnails_done.connect(self.thumbnails_done)
        self.results.report_shown.connect(self.report_shown)
        self.results.feedback_clicked.connect(self.give_feedback)
        self.results.open_clicked.connect(self.open_study)
        self.kos_bar.send_requested.connect(self.send_to_pacs)
        self.kos_bar.status.connect(self.status_label.setText)
        self.kos_bar.sent.connect(self.kos_sent)
        self.kos_bar.failed.connect(self._on_kos_failed)
        self.kos_bar.confirm_needed.connect(self.kos_confirm_needed)
        # save the defaults when the user changes them (after the saved ones are shown)
        self.hide_check.toggled.connect(self._on_hide_toggled)
        self.min_support_spin.valueChanged.connect(self._on_min_support_changed)
        for signal in (self.level_combo.currentIndexChanged, self.limit_spin.valueChanged,
                       self.exclude_check.toggled, self.hybrid_check.toggled):
            signal.connect(self._save_defaults)

    # ---------------------------------------------------------------- settings

    def _load_node_settings(self) -> None:
        self.node_box.load(self.settings)
        self.destination_combo.setEditText(str(self.settings.value("kos/destination", "")))

    def save_node_settings(self) -> None:
        self.node_box.save(self.settings)

    def _save_defaults(self, *_: object) -> None:
        self._read_controls()
        _panel_settings.save_defaults(self.settings, self.model.state)

    def set_node(self, url: str, token: str = "", *, timeout: float | None = None) -> None:
        """Point the panel at a node (and remember it)."""
        self.node_box.set_values(url, token, timeout)
        self.save_node_settings()
        self.node_box.unfold(False)
        self.refresh_destinations()

    def node_settings(self) -> NodeSettings:
        """The node as the fields say (``ValueError`` naming the field when one is wrong)."""
        return self.node_box.node_settings()

    def set_min_support(self, share: float) -> None:
        """The share of the results (0 to 1) that must carry a finding to show it."""
        self.min_support_spin.setValue(round(share * 100))

    @property
    def host(self) -> ViewerHost | None:
        host: ViewerHost | None = (self._host() if isinstance(self._host, weakref.ref)
                                   else self._host)
        return host

    @host.setter
    def host(self, host: ViewerHost | None) -> None:
        self.set_host(host)

    def set_host(self, host: ViewerHost | None) -> None:
        """The viewer this panel serves; a ``QObject`` host is held weakly (no cycle)."""
        self._host = weakref.ref(host) if isinstance(host, QObject) else host

    # ---------------------------------------------------------------- state <-> controls

    def _show_state(self) -> None:
        self.controls.show_state(self.model.state)
        self.min_support_spin.setValue(round(self.model.state.min_support * 100))
        self._show_busy(False)
        self._show_error("")

    def _read_controls(self) -> None:
        self.controls.read_state(self.model.state)
        self.model.state.min_support = self.min_support_spin.value() / 100.0

    def _show_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self.busy_changed.emit(busy)

    def _show_error(self, text: str) -> None:
        self.error_label.show_html(text)

    def show_host_problem(self, message: str, hint: str = "") -> None:
        """Say in the banner why the host has no study to show (e.g. the node is down).

        The banner keeps saying it, instead of "No study is open", until
        :meth:`clear_host_problem` (the host calls it once a study opens).
        """
        self.error_label.say_host_problem(message, hint)

    def clear_host_problem(self) -> None:
        self.error_label.forget_host_problem()

    @property
    def busy(self) -> bool:
        return self.model.busy

    # ---------------------------------------------------------------- queries

    def find_similar(self) -> int:
        """Find cases similar to the host's current study; returns the query's generation."""
        host = self.host
        study = host.current_study() if host is not None else None
        if study is None or (not isinstance(study, str) and len(study) == 0):
            self._show_error(self.error_label.host_problem or _banner_html(
                "No study is open.", "Open a study in the viewer, then click Find similar — "
                "or type words and click Search text."))
            return self.model.generation
        series_uid = sop_uid = ""
        current_image = getattr(host, "current_image", None)
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

    def _search_typed_text(self) -> None:
        self.search_text()

    def search_text(self, text: str | None = None) -> int:
        """Find cases by words (the text box, or ``text``)."""
        if text is not None:
            self.text_edit.setText(text)
        self._read_controls()
        if not self.model.state.text.strip():
            self._show_error(_banner_html("Type a few words to search by text."))
            return self.model.generation
        return self._start(self.model.begin_query(study=None))

    def give_feedback(self, uid: str, value: FeedbackValues | str) -> int:
        """Mark a result as more / less like this, and re-run the query."""
        self.model.mark(uid, value)
        self._refresh_feedback()
        self._read_controls()
        request = self.model.rerun()
        return self._start(request) if request is not None else self.model.generation

    def clear_feedback(self) -> None:
        """Forget the marks (the results stay until the next query)."""
        self.model.clear_feedback()
        self._refresh_feedback()

    def reset_feedback(self) -> int:
        """Forget the marks and re-run the query as it was first asked."""
        self.clear_feedback()
        self._read_controls()
        request = self.model.rerun()
        return self._start(request) if request is not None else self.model.generation

    def cancel(self) -> None:
        """Cancel the running query (its answer, if it still comes, is dropped)."""
        if self._query_task is not None:
            self._query_task.cancel()
        self.results.cancel()
        if self.model.busy:
            self.model.cancel()
            self._show_busy(False)
            self.status_label.setText("Cancelled.")

    def _node_or_banner(self) -> NodeSettings | None:
        try:
            return self.node_settings()
        except ValueError as exc:
            self._show_error(_banner_html(f"The node settings are not valid: {exc}",
                                          "Correct them under Node connection and settings."))
            return None

    def _start(self, request: QueryRequest) -> int:
        # a newer query supersedes the older: cancel it, its answer will be stale anyway
        if self._query_task is not None:
            self._query_task.cancel()
        self.results.cancel()
        node = self._node_or_banner()
        if node is None:
            self.model.fail(request.generation, "invalid node settings")
            return request.generation
        self._show_error("")
        self._show_busy(True)
        self.status_label.setText("Searching…")
        log.debug("event=similar_query generation=%d kind=%s level=%s", request.generation,
                  request.kind.value, request.query.level)
        self._query_task = self.runner.start(
            partial(node_tasks.find_similar, node, request), done=self._on_result,
            failed=self._on_failed, generation=request.generation)
        return request.generation

    def _on_result(self, answer: TaskAnswer) -> None:
        result: SimilarResult = answer.value
        if not self.model.accept(answer.generation, result):
            return  # superseded
        self._show_busy(False)
        self._refresh_feedback()
        self._show_consensus()
        self.order_label.setText(self.model.order_note)
        self.order_label.setVisible(bool(self.model.order_note))
        n = len(result.cases)
        self.status_label.setText(f"{n} similar case{'s' if n != 1 else ''}." if n
                                  else "No similar cases found with these filters.")
        node = self._node_or_banner()
        if node is not None:
            self.results.fill(node, answer.generation)
        self.results_ready.emit(n)

    def _on_failed(self, answer: TaskAnswer) -> None:
        error: PrecedentError = answer.value
        if isinstance(error, QueryCancelled) or not self.model.fail(answer.generation,
                                                                    str(error)):
            return
        self._show_busy(False)
        self.status_label.setText("")
        self._show_error(_banner_html(error.message, error.hint))
        self.query_failed.emit(str(error))

    # ---------------------------------------------------------------- results

    def _refresh_feedback(self) -> None:
        self.results.refresh()
        self.refine_label.setText(self.model.feedback_line)
        self.refine_bar.setVisible(bool(self.model.feedback_line))

    def _show_consensus(self) -> None:
        line = self.model.consensus_line
        supported = (self.model.consensus is not None
                     and self.model.consensus_is_supported(self.model.consensus))
        self.consensus_label.setText(line)
        self.consensus_label.setStyleSheet(
            "font-weight:bold; font-size:14px; padding:2px;" if supported
            else "color:#666; padding:2px;")
        self.consensus_label.setVisible(bool(line))

    def _on_hide_toggled(self, hide: bool) -> None:
        self.model.state.hide_identity = hide
        self.results.refresh()
        self._save_defaults()

    def _on_min_support_changed(self, percent: int) -> None:
        self.model.state.min_support = percent / 100.0
        self._show_consensus()
        self._save_defaults()

    def row_widget(self, index: int) -> CaseRow:
        """The widget of result ``index`` (its buttons, thumbnail)."""
        return self.results.rows[index]

    @property
    def case_uids(self) -> list[str]:
        return [c.uid for c in self.model.cases]

    def open_study(self, study_uid: str) -> None:
        """Ask the host to show a retrieved case."""
        host = self.host
        if host is None:
            self.status_label.setText("This viewer cannot open cases.")
            return
        host.open_study(study_uid)

    def open_case(self, case: SimilarCase) -> None:
        """Ask the host to show a retrieved case."""
        self.open_study(case.study_instance_uid)

    # ---------------------------------------------------------------- KOS

    def send_to_pacs(self) -> None:
        """Store the answer as a Key Object Selection note and send it to the destination.

        When this study already has one (sent from this panel, or found on the node),
        the panel asks first: each send adds another KOS series to the study.
        """
        host = self.host
        study = host.current_study() if host is not None else None
        if not isinstance(study, str):
            self._show_error(_banner_html("Send to PACS works for studies the node has.",
                                          "Send this study to the node first."))
            return
        node = self._node_or_banner()
        if node is None:
            return
        self._read_controls()
        if self.kos_bar.destination:
            self.settings.setValue("kos/destination", self.kos_bar.destination)
        self.kos_bar.send(node, study, self.model.state.to_query())

    def _on_kos_failed(self, message: str, hint: str) -> None:
        self._show_error(_banner_html(message, hint))
        self.kos_sent.emit(f"{message} {hint}".strip())

    def refresh_destinations(self) -> None:
        """Ask the node which destinations it knows (fills the chooser)."""
        try:
            node = self.node_settings()
        except ValueError:
            return  # said when a query is made
        self.runner.start(partial(node_tasks.list_destinations, node),
                          done=self._on_destinations)

    def _on_destinations(self, answer: TaskAnswer) -> None:
        self.kos_bar.set_destinations(answer.value)

    # ---------------------------------------------------------------- lifetime

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Cancel running calls and wait for the worker threads (call before closing)."""
        self.model.cancel()
        for runner in (self.runner, self.results.runner, self.kos_bar.runner):
            runner.shutdown(timeout_ms)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown(2000)
        super().closeEvent(event)
