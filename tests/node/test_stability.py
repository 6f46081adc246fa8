"""Study completeness: the study-stable event fires after the quiet period, once, and
again when a later instance arrives."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests._peers import storescu
from tests._synthetic import ct_instance, write_files


def test_study_stable_fires_after_quiet_period(make_node, tmp_path: Path) -> None:
    node = make_node(no_model=True, node={"stable_after_s": 0.6})
    fired: list[tuple[str, float]] = []
    seen = threading.Event()

    def on_stable(uid: str) -> None:
        fired.append((uid, time.monotonic()))
        seen.set()

    node.node.stability.add_listener(on_stable)
    study = "1.2.826.0.1.77"
    first = write_files([ct_instance(study_uid=study, series_uid=study + ".1",
                                     patient_id="PS", seed=1)], tmp_path / "a")
    sent = time.monotonic()
    assert storescu(node.dimse_port, first, called=node.ae_title).returncode == 0
    assert seen.wait(10)
    assert fired[0][0] == study and fired[0][1] - sent >= 0.6
    time.sleep(1.5)
    assert len(fired) == 1, "fires once per quiet period"

    seen.clear()
    later = write_files([ct_instance(study_uid=study, series_uid=study + ".1",
                                     patient_id="PS", instance_number=2, seed=2)],
                        tmp_path / "b")
    assert storescu(node.dimse_port, later, called=node.ae_title).returncode == 0
    assert seen.wait(10)
    assert [uid for uid, _ in fired] == [study, study]
