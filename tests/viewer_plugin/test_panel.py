"""The Find-similar panel against the real node (``running_node``), offscreen.

Only the slow-node conditions use the in-process stand-in (``_standin``): a real
node cannot be made slow on demand.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import Dataset
from pydicom.uid import KeyObjectSelectionDocumentStorage
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QLineEdit

from tests._peers import free_port
from tests.viewer_plugin._standin import stand_in
from tests.viewer_plugin.conftest import Host, SeededNode
from viewer_plugin.client import NodeSettings, PrecedentClient, SimilarQuery
from viewer_plugin.panel import FindSimilarPanel

WAIT_MS = 30_000


def make_panel(qtbot: Any, qsettings: Any, *, url: str, token: str = "",
               host: Host | None = None, timeout: float = 20.0) -> FindSimilarPanel:
    panel = FindSimilarPanel(host=host or Host(), settings=qsettings)
    qtbot.addWidget(panel)
    panel.set_node(url, token, timeout=timeout)
    panel.resize(460, 800)
    panel.show()
    return panel


def key_objects(seeded_node: SeededNode, study: str) -> list[Dataset]:
    """The Key Object Selection documents of a study (QIDO-RS series, then WADO-RS)."""
    with PrecedentClient(NodeSettings(url=seeded_node.url, token=seeded_node.token)) as client:
        series = client.search_series(study, Modality="KO")
        return [ds for s in series
                for ds in client.retrieve_series(study, s["0020000E"]["Value"][0])]


def referenced_instances(kos: Dataset) -> list[str]:
    """The SOP Instance UIDs a KOS references, in its content order."""
    assert kos.SOPClassUID == KeyObjectSelectionDocumentStorage
    return [str(ref.ReferencedSOPInstanceUID)
            for item in kos.ContentSequence if item.ValueType == "IMAGE"
            for ref in item.ReferencedSOPSequence]


def find(qtbot: Any, panel: FindSimilarPanel) -> None:
    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        qtbot.mouseClick(panel.find_button, _left())


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


# ----------------------------------------------------------------- real node


def test_find_similar_fills_the_panel_with_the_nodes_cases(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    query_study = seeded_node.studies[0].study_instance_uid
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(query_study))
    panel.limit_spin.setValue(5)
    panel.set_min_support(0.0)  # any shared label is shown (the threshold has its own test)
    find(qtbot, panel)

    with PrecedentClient(NodeSettings(url=seeded_node.url, token=seeded_node.token)) as client:
        expected = client.similar_to_study(query_study, query=SimilarQuery(limit=5))
    assert panel.case_uids == [c.uid for c in expected.cases]
    assert 1 <= len(panel.case_uids) <= 5
    assert query_study not in panel.case_uids  # its own patient is excluded by default
    assert set(panel.case_uids) <= seeded_node.stored_study_uids()
    assert panel.results_list.count() == len(expected.cases)
    assert expected.consensus is not None  # every study on this node has a labelled report
    assert panel.consensus_label.text() == expected.consensus.line
    assert " similar case" in panel.consensus_label.text()
    assert not panel.error_label.isVisible()

    row = panel.row_widget(0)
    assert "similarity" in row.title.text()
    assert row.patient.text() == "Patient: (hidden)"  # identities hidden by default
    with qtbot.waitSignal(panel.thumbnails_done, timeout=WAIT_MS) as thumbs:
        pass
    assert thumbs.args[0] >= 1
    assert row.thumbnail.pixmap() is not None and not row.thumbnail.pixmap().isNull()


def test_the_report_pane_shows_the_selected_cases_report(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(seeded_node.studies[1].study_instance_uid))
    with qtbot.waitSignal(panel.report_shown, timeout=WAIT_MS):
        find(qtbot, panel)
    case = panel.model.selected_case
    assert case is not None
    with PrecedentClient(NodeSettings(url=seeded_node.url, token=seeded_node.token)) as client:
        report = client.report(case.study_instance_uid)
    assert report is not None and report.text
    shown = panel.report_view.toPlainText()
    assert report.text.split()[0] in shown
    assert " ".join(report.text.split())[:60] in " ".join(shown.split())

    with qtbot.waitSignal(panel.report_shown, timeout=WAIT_MS):
        panel.results_list.setCurrentRow(1)
    assert panel.model.selected == 1


def test_thumbs_up_reruns_the_query_and_changes_the_order(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(seeded_node.studies[2].study_instance_uid))
    panel.limit_spin.setValue(8)
    find(qtbot, panel)
    before = panel.case_uids
    assert len(before) >= 3
    liked = before[-1]
    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        qtbot.mouseClick(panel.row_widget(len(before) - 1).thumbs_up, _left())
    after = panel.case_uids
    assert after != before  # the query moved towards the liked case
    assert liked in after and after.index(liked) <= before.index(liked)
    assert panel.model.state.positive == {liked}
    assert panel.row_widget(after.index(liked)).thumbs_up.isChecked()

    disliked = after[0]
    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        qtbot.mouseClick(panel.row_widget(0).thumbs_down, _left())
    assert panel.case_uids[0] != disliked
    assert disliked not in panel.case_uids  # the node leaves "less like this" out
    assert panel.model.state.negative == {disliked}


def test_a_text_query_highlights_its_words_in_the_report(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    word = next(label for s in seeded_node.studies for label in s.labels)
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token)
    panel.text_edit.setText(word)
    with (qtbot.waitSignal(panel.report_shown, timeout=WAIT_MS),
          qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS)):
        qtbot.mouseClick(panel.text_button, _left())
    assert panel.case_uids
    # the hybrid search fuses the reports' words: cases whose report says the word are found
    with_word = [i for i, c in enumerate(panel.model.cases) if word in c.labels]
    assert with_word, f"no case labelled {word!r} among {panel.model.cases}"
    if with_word[0] != panel.model.selected:
        with qtbot.waitSignal(panel.report_shown, timeout=WAIT_MS):
            panel.results_list.setCurrentRow(with_word[0])
    assert word.lower() in panel.report_view.toPlainText().lower()
    assert "#ffe066" in panel.report_view.toHtml()  # the <mark> survives QTextDocument


def test_hiding_identity_is_on_by_default_and_can_be_turned_off(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(seeded_node.studies[3].study_instance_uid))
    assert panel.hide_check.isChecked() and panel.exclude_check.isChecked()
    find(qtbot, panel)
    case = panel.model.cases[0]
    assert case.patient_id  # every study on this node has a patient ID
    texts = " ".join(w.text() for w in panel.findChildren(QLabel))
    assert case.patient_id not in texts
    panel.hide_check.setChecked(False)
    assert "(hidden)" not in panel.row_widget(0).patient.text()
    assert case.patient_id in panel.row_widget(0).patient.text()
    assert qsettings.value("defaults/hide_identity") in (False, "false")


def test_send_to_pacs_writes_a_key_object_selection(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    study = seeded_node.studies[4].study_instance_uid
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(study))
    find(qtbot, panel)
    with qtbot.waitSignal(panel.kos_sent, timeout=WAIT_MS) as sent:
        qtbot.mouseClick(panel.send_button, _left())
    assert sent.args[0].startswith("Key Object Selection stored on the node"), sent.args[0]

    # the node holds it: a KO series in the study, referencing the cases the panel shows
    kos = key_objects(seeded_node, study)
    assert len(kos) == 1
    assert referenced_instances(kos[0]) == [c.best_instance_uid for c in panel.model.cases]


@pytest.mark.parametrize(("label", "has_series", "has_instance"),
                         [("Series", True, False), ("Image", True, True)])
def test_series_and_image_levels_list_series_and_images(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode,
        label: str, has_series: bool, has_instance: bool) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(seeded_node.studies[5].study_instance_uid))
    panel.level_combo.setCurrentText(label)
    find(qtbot, panel)
    assert panel.model.cases
    for case in panel.model.cases:
        assert bool(case.series_instance_uid) is has_series
        assert bool(case.sop_instance_uid) is has_instance
        assert case.study_instance_uid != seeded_node.studies[5].study_instance_uid


def test_filters_that_match_nothing_say_so(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(seeded_node.studies[6].study_instance_uid))
    panel.modality_combo.setCurrentText("MG")  # the demo studies are CT
    find(qtbot, panel)
    assert panel.case_uids == []
    assert panel.status_label.text() == "No similar cases found with these filters."


def test_a_node_without_its_model_says_why(
        qtbot: Any, qsettings: Any, make_node: Any) -> None:
    node = make_node(no_model=True)
    panel = make_panel(qtbot, qsettings, url=node.http_url)
    with qtbot.waitSignal(panel.query_failed, timeout=WAIT_MS):
        panel.search_text("pneumothorax")
    text = panel.error_label.text()
    assert "cannot search right now" in text
    assert "model" in text.lower()
    assert "ask your IT admin" in text


def test_an_unreachable_node_is_said_in_plain_words(qtbot: Any, qsettings: Any) -> None:
    panel = make_panel(qtbot, qsettings, url=f"http://127.0.0.1:{free_port()}",
                       host=Host("1.2.3.4"))
    with qtbot.waitSignal(panel.query_failed, timeout=WAIT_MS):
        qtbot.mouseClick(panel.find_button, _left())
    text = panel.error_label.text()
    assert panel.error_label.isVisible()
    assert "Cannot reach the Precedent node" in text
    assert "Check that the node is running" in text
    assert not panel.busy and not panel.progress.isVisible()


def test_a_refused_token_is_said_in_plain_words(
        qtbot: Any, qsettings: Any, make_node: Any) -> None:
    node = make_node(no_model=True, http={"admin_token": "the-admin", "read_token": "the-reader"})
    panel = make_panel(qtbot, qsettings, url=node.http_url, token="not-the-token",
                       host=Host("1.2.3.4"))
    with qtbot.waitSignal(panel.query_failed, timeout=WAIT_MS):
        qtbot.mouseClick(panel.find_button, _left())
    assert "refused the access token" in panel.error_label.text()
    assert "valid access token" in panel.error_label.text()
    assert "not-the-token" not in panel.error_label.text()


def test_a_study_the_node_does_not_have_says_so(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host("1.2.826.0.1.99999.1"))
    with qtbot.waitSignal(panel.query_failed, timeout=WAIT_MS):
        qtbot.mouseClick(panel.find_button, _left())
    assert "not" in panel.error_label.text().lower()
    assert "sent to the node" in panel.error_label.text()


def test_no_study_open_tells_what_to_do(qtbot: Any, qsettings: Any) -> None:
    panel = make_panel(qtbot, qsettings, url="http://127.0.0.1:9", host=Host(None))
    qtbot.mouseClick(panel.find_button, _left())
    assert "No study is open" in panel.error_label.text()


# ----------------------------------------------------------------- token and settings


def test_the_token_is_masked_and_persisted(qtbot: Any, qsettings: Any) -> None:
    panel = make_panel(qtbot, qsettings, url="http://127.0.0.1:9", token="s3cret-token")
    assert panel.token_edit.echoMode() is QLineEdit.EchoMode.Password
    assert "s3cret" not in panel.token_edit.displayText()
    for widget in panel.findChildren(QLabel):
        assert "s3cret" not in widget.text()

    again = FindSimilarPanel(host=Host(), settings=qsettings)
    qtbot.addWidget(again)
    assert again.node_settings().token == "s3cret-token"
    assert again.node_settings().url == "http://127.0.0.1:9"
    assert again.token_edit.echoMode() is QLineEdit.EchoMode.Password
    assert "s3cret" not in again.token_edit.displayText()
    assert "s3cret" not in repr(again.node_settings())


def test_defaults_persist(qtbot: Any, qsettings: Any) -> None:
    panel = make_panel(qtbot, qsettings, url="http://127.0.0.1:9")
    panel.level_combo.setCurrentIndex(1)
    panel.limit_spin.setValue(25)
    panel.exclude_check.setChecked(False)
    again = FindSimilarPanel(host=Host(), settings=qsettings)
    qtbot.addWidget(again)
    assert again.level_combo.currentText() == "Series"
    assert again.limit_spin.value() == 25
    assert not again.exclude_check.isChecked()
    assert again.hide_check.isChecked()


# ----------------------------------------------------------------- slow node (stand-in)


def test_a_slow_node_does_not_block_the_ui_thread(qtbot: Any, qsettings: Any) -> None:
    with stand_in(slow_delay_s=1.5) as node:
        panel = make_panel(qtbot, qsettings, url=node.url)
        ticks = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(1))
        timer.start(20)
        panel.search_text("1.2.5 slow")
        assert panel.busy and panel.progress.isVisible()
        qtbot.wait(600)
        assert len(ticks) >= 10  # the event loop kept turning while the node thought
        assert panel.busy and panel.cancel_button.isEnabled()
        with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
            pass
        timer.stop()
        assert panel.case_uids == ["1.2.5"] and not panel.busy


def test_a_newer_query_supersedes_an_older_one(qtbot: Any, qsettings: Any) -> None:
    with stand_in(slow_delay_s=1.0) as node:
        panel = make_panel(qtbot, qsettings, url=node.url)
        shown: list[list[str]] = []
        panel.results_ready.connect(lambda _n: shown.append(panel.case_uids))
        old = panel.search_text("1.2.111 slow")
        new = panel.search_text("1.2.222")
        assert new > old
        qtbot.waitUntil(lambda: len(node.requests) >= 2 and shown != [], timeout=WAIT_MS)
        qtbot.wait(1500)  # the old answer arrives now, and must be dropped
        assert shown == [["1.2.222"]]
        assert panel.case_uids == ["1.2.222"]


def test_cancel_stops_waiting_and_drops_the_answer(qtbot: Any, qsettings: Any) -> None:
    with stand_in(slow_delay_s=1.0) as node:
        panel = make_panel(qtbot, qsettings, url=node.url)
        shown: list[int] = []
        panel.results_ready.connect(shown.append)
        panel.search_text("1.2.333 slow")
        qtbot.wait(100)
        qtbot.mouseClick(panel.cancel_button, _left())
        assert not panel.busy and panel.status_label.text() == "Cancelled."
        qtbot.wait(1300)
        assert shown == [] and panel.case_uids == []


def test_a_timeout_is_said_in_plain_words(qtbot: Any, qsettings: Any) -> None:
    with stand_in(slow_delay_s=2.0) as node:
        panel = make_panel(qtbot, qsettings, url=node.url, timeout=0.5)
        with qtbot.waitSignal(panel.query_failed, timeout=WAIT_MS):
            panel.search_text("1.2.5 slow")
        assert "did not answer within 0.5 s" in panel.error_label.text()



# ----------------------------------------------------------------- issue 8 and 10 points


def test_the_default_node_is_the_nodes_own_port(qtbot: Any, qsettings: Any) -> None:
    """The node listens on 8080 out of the box (8042 is Orthanc's)."""
    panel = FindSimilarPanel(host=Host(), settings=qsettings)
    qtbot.addWidget(panel)
    assert panel.node_settings().url == "http://127.0.0.1:8080"
    assert panel.url_edit.placeholderText() == "http://127.0.0.1:8080"
    assert panel.node_box.fields.isVisibleTo(panel)  # unfolded until a URL is saved


def test_a_finding_is_shown_only_with_its_stated_support(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(seeded_node.studies[7].study_instance_uid))
    assert panel.min_support_spin.value() == 30  # the default: 3 of 10
    panel.limit_spin.setValue(10)
    find(qtbot, panel)
    consensus = panel.model.consensus
    assert consensus is not None

    def verdict(share: float) -> str:
        if consensus.count >= 2 and consensus.count / consensus.of >= share:
            return consensus.line
        return f"No finding is shared by at least {round(share * 100)}% of these cases."

    assert panel.consensus_label.text() == verdict(0.3)
    panel.min_support_spin.setValue(100)
    assert panel.consensus_label.text() == verdict(1.0)
    panel.min_support_spin.setValue(0)
    assert panel.consensus_label.text() == consensus.line  # 0: any shared label
    assert float(qsettings.value("defaults/min_support")) == 0.0


def test_a_hybrid_text_search_says_what_orders_it(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token)
    panel.hybrid_check.setChecked(True)
    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        panel.search_text("effusion")
    title = panel.row_widget(0).title.text()
    # the node sends the RRF score a fused answer is ordered by, (0011,1008): that is the
    # number shown (a node without it: the cosine and "rank fusion", test_model.py)
    assert "fused score" in title and "similarity" not in title
    assert panel.order_label.isVisible()
    assert panel.order_label.text().startswith("Ordered by the fused score")

    panel.hybrid_check.setChecked(False)
    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        panel.search_text("effusion")
    assert panel.order_label.text().startswith("Ordered by image–text cosine")

    panel.set_host(Host(seeded_node.studies[0].study_instance_uid))
    find(qtbot, panel)  # an image query: the number is the similarity, no note
    assert "similarity" in panel.row_widget(0).title.text()
    assert not panel.order_label.isVisible()


def test_more_like_this_shows_the_query_changed_and_reset_undoes_it(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(seeded_node.studies[8].study_instance_uid))
    panel.limit_spin.setValue(6)
    find(qtbot, panel)
    before = panel.case_uids
    assert not panel.refine_bar.isVisible()

    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        qtbot.mouseClick(panel.row_widget(len(before) - 1).thumbs_up, _left())
    assert panel.refine_bar.isVisible()
    assert panel.refine_label.text() == "Refined: 1 more like"
    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        qtbot.mouseClick(panel.row_widget(0).thumbs_down, _left())
    assert panel.refine_label.text() == "Refined: 1 more like, 1 less like"

    with qtbot.waitSignal(panel.results_ready, timeout=WAIT_MS):
        qtbot.mouseClick(panel.refine_reset_button, _left())
    assert not panel.refine_bar.isVisible()
    assert panel.model.state.positive == set() and panel.model.state.negative == set()
    assert panel.case_uids == before  # the original answer again


def test_a_second_send_to_pacs_asks_first(
        qtbot: Any, qsettings: Any, seeded_node: SeededNode) -> None:
    study = seeded_node.studies[9].study_instance_uid
    panel = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(study))
    find(qtbot, panel)
    with qtbot.waitSignal(panel.kos_sent, timeout=WAIT_MS):
        qtbot.mouseClick(panel.send_button, _left())
    assert len(key_objects(seeded_node, study)) == 1

    with qtbot.waitSignal(panel.kos_confirm_needed, timeout=WAIT_MS) as asked:
        qtbot.mouseClick(panel.send_button, _left())
    assert "already has a similar-cases note" in asked.args[0]
    assert panel.kos_bar.confirm.isVisible()
    qtbot.mouseClick(panel.kos_bar.keep_button, _left())
    assert panel.status_label.text() == "Not sent." and not panel.kos_bar.confirm.isVisible()
    assert len(key_objects(seeded_node, study)) == 1  # nothing was sent

    with qtbot.waitSignal(panel.kos_confirm_needed, timeout=WAIT_MS):
        qtbot.mouseClick(panel.send_button, _left())
    with qtbot.waitSignal(panel.kos_sent, timeout=WAIT_MS) as sent:
        qtbot.mouseClick(panel.kos_bar.send_again_button, _left())
    assert sent.args[0].startswith("Key Object Selection")
    assert len(key_objects(seeded_node, study)) == 2

    # a panel that did not send them itself asks the node, and warns too
    other = make_panel(qtbot, qsettings, url=seeded_node.url, token=seeded_node.token,
                       host=Host(study))
    find(qtbot, other)
    with qtbot.waitSignal(other.kos_confirm_needed, timeout=WAIT_MS) as asked:
        qtbot.mouseClick(other.send_button, _left())
    assert "2 similar-cases notes" in asked.args[0]
    assert len(key_objects(seeded_node, study)) == 2
