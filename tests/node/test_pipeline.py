"""End to end: a study sent with storescu becomes searchable without any manual step."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._peers import storescu
from tests._synthetic import make_studies, write_files

pytestmark = pytest.mark.slow


def test_storescu_study_is_indexed_at_every_level(make_node, tmp_path: Path) -> None:
    node = make_node()
    studies = list(make_studies(4, instances_per_study=3))
    files = [p for s in studies for p in write_files(s.datasets, tmp_path / s.patient_id)]
    assert storescu(node.dimse_port, files, called=node.ae_title).returncode == 0
    counts = node.wait_indexed()
    assert counts["by_state"]["done"] == 12 and counts["by_state"]["failed"] == 0
    _, index_set = node.services.model.require()
    assert (index_set.count("instance"), index_set.count("series"),
            index_set.count("study")) == (12, 4, 4)
    conn = node.services.connections.get()
    study_vectors = {r[0] for r in conn.execute("SELECT uid FROM vectors WHERE level='study'")}
    assert study_vectors == {s.study_instance_uid for s in studies}
