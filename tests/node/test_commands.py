"""`precedent index import|status|rebuild`, `precedent reports import`, `precedent eval`:
the admin's backfill path, on real files, with a real (small) model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._peers import test_files
from tests._synthetic import make_studies, write_files

pytestmark = pytest.mark.slow


def _cli(*args: str, model: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--model", f"local-dir:{model}"] if model else []
    return subprocess.run([sys.executable, "-m", "node", *args, *extra], capture_output=True,
                          text=True, timeout=300, env={"PRECEDENT_MODEL__PRECISION": "fp32",
                                                       "PRECEDENT_WORKER__DECODE_PROCESSES": "0",
                                                       "PATH": "/usr/bin:/bin"})


def test_import_archive_then_status_eval_and_rebuild(tmp_path: Path, tiny_model_dir: Path) -> None:
    studies = list(make_studies(8, instances_per_study=2))
    archive = tmp_path / "archive"
    for s in studies:
        write_files(s.datasets, archive / s.patient_id)
    (archive / "notes.txt").write_text("not DICOM")
    sr = next(f for f in test_files() if f.name == "reportsi.dcm")
    (archive / "sr.dcm").write_bytes(sr.read_bytes())
    data = ["--data-dir", str(tmp_path / "data")]

    result = _cli("index", "import", str(archive), *data, model=tiny_model_dir)
    assert result.returncode == 0, result.stderr
    assert "17  stored" in result.stdout
    assert "1  skipped: the data set cannot be decoded" in result.stdout

    status = json.loads(_cli("index", "status", "--json", *data).stdout)
    assert status["by_state"]["done"] == 16 and status["by_state"]["skipped"] == 1
    assert status["vectors"] == {"study": 8, "series": 8, "instance": 16}
    assert status["model_identity"].startswith("local-dir:")
    assert any("SR" in r or "no image" in r.lower() or "not an image" in r.lower()
               for r in status["skipped_reasons"]), status["skipped_reasons"]
    human = _cli("index", "status", *data).stdout
    assert "vectors: study 8, series 8, instance 16" in human

    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["StudyInstanceUID", "labels"])
        for s in studies:
            w.writerow([s.study_instance_uid, s.finding])
    ev = _cli("eval", "--labels", str(labels), "--k", "3", *data)
    assert ev.returncode == 0, ev.stderr
    assert "precision@3" in ev.stdout and "mAP@3" in ev.stdout

    reports = tmp_path / "reports.csv"
    with reports.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["AccessionNumber", "text", "labels"])
        for s in studies[:3]:
            w.writerow([s.datasets[0].AccessionNumber, s.report, s.finding])
        w.writerow(["NOSUCHACC", "text", ""])
    rep = _cli("reports", "import", str(reports), *data)
    assert rep.returncode == 0, rep.stderr
    assert "4 rows: 3 matched, 1 unmatched" in rep.stdout

    rebuilt = _cli("index", "rebuild", *data, model=tiny_model_dir)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "vectors: study 8, series 8, instance 16" in rebuilt.stdout


def test_import_of_a_missing_path_says_so(tmp_path: Path) -> None:
    result = _cli("index", "import", str(tmp_path / "nope"), "--no-index",
                  "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "is neither a file nor a folder" in result.stderr


def test_a_node_started_with_another_model_refuses_to_mix_and_says_how(
        make_node, tmp_path: Path, tiny_model_dir: Path) -> None:
    """Vectors of one model in the catalog, the node started with another: the model is
    reported unavailable with the rebuild command, the node still receives."""
    import shutil

    from tests._models import write_random_model_dir
    from tests.conftest import TINY_MODEL_CONFIG

    first = make_node(data_dir=tmp_path / "data")
    first.seed_demo(2, instances_per_study=1, seed=5)
    first.stop()
    other = write_random_model_dir(TINY_MODEL_CONFIG, tmp_path / "other-model", seed=1)
    second = make_node(data_dir=tmp_path / "data", model={"name": f"local-dir:{other}"})
    import time

    deadline = time.monotonic() + 60
    while second.services.model.status.value == "loading" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert second.services.model.status.value == "unavailable"
    reason = second.services.model.reason or ""
    assert "the index holds vectors of model" in reason
    assert "precedent index rebuild" in reason
    with second.http() as client:
        assert "precedent index rebuild" in client.get("/health").json()["model"]["reason"]
    shutil.rmtree(other)
