"""The image tower's CPU engine in a running node (tiny random-weight model): a node on
OpenVINO answers similar-case queries as a node on torch fp32 does, on real pictures sent
over DIMSE; its first start exports while the node keeps receiving, and says so."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests._peers import storescu
from tests.conftest import RunningNode
from tests.node._cli import cli
from tests.web._helpers import SCORE, first_value

#: one file per distinct picture (no two encodings of one image: they would tie)
#: (not rtdose.dcm: an RT Dose is not a picture of a case, and is never embedded)
PYDICOM = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")
PYDICOM_DATA = ("MR2_UNCR.dcm", "emri_small.dcm", "RG1_UNCR.dcm", "RG3_UNCR.dcm",
                "US1_UNCR.dcm", "SC_rgb.dcm", "693_UNCR.dcm", "mlut_18.dcm",
                "vlut_04.dcm", "OBXXXX1A.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm",
                "eCT_Supplemental.dcm")
#: how far a similarity score on the engine may be from torch fp32's: the fidelity check's
#: margin (each vector within cosine 0.995 of torch fp32's); measured: at most 0.0008
SCORE_TOLERANCE = 0.005
ROOT = "1.2.826.0.1.3680043.10.1137"
K = 5
OPENVINO = {"engine": "openvino", "engine_precision": "int8"}


def _sources() -> list[Path]:
    import data_store  # the pydicom-data package

    own = Path(pydicom.__file__).parent / "data" / "test_files"
    extra = Path(data_store.__file__).parent / "data"
    return [own / n for n in PYDICOM] + [extra / n for n in PYDICOM_DATA]


def _one_study_each(folder: Path) -> list[Path]:
    """Each real picture as a study of its own patient (fresh UIDs, pixels untouched)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, source in enumerate(_sources(), start=1):
        ds = pydicom.dcmread(source)
        study = f"{ROOT}.{i}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, f"{study}.1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{study}.1.1"
        ds.PatientID, ds.PatientName = f"ENGINE{i}", f"Engine^{i}"
        path = folder / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def _send(node: RunningNode, files: list[Path]) -> None:
    result = storescu(node.dimse_port, files, called=node.ae_title)
    assert result.returncode == 0, result.stderr


def _similar(node: RunningNode, study: str, limit: int) -> list[tuple[str, float]]:
    with node.http() as http:
        r = http.get(f"/dicom-web/studies/{study}/similar", params={"limit": limit})
    assert r.status_code == 200, r.text
    return [(first_value(item, "0020000D"), float(first_value(item, SCORE))) for item in r.json()]


def _same_ranking(ours: list[tuple[str, float]], torch: list[tuple[str, float]], k: int) -> None:
    """``ours`` (the engine's top ``k``) is torch's top ``k``, in torch's order, its scores
    within the tolerance; ``torch`` goes further than ``k``, so that two results whose
    torch scores are closer than the tolerance (a tie at that precision) may swap, at the
    boundary too."""
    scores = dict(torch)
    assert len(ours) == k and len(torch) > k
    assert all(uid in scores for uid, _ in ours), (ours, torch)
    for uid, score in ours:
        assert abs(score - scores[uid]) <= SCORE_TOLERANCE, (uid, score, scores[uid])
    for (a, _), (b, _) in itertools.pairwise(ours):
        assert scores[a] >= scores[b] - SCORE_TOLERANCE, (ours, torch)  # only a tie swaps
    kth = torch[k - 1][1]
    assert all(scores[uid] >= kth - SCORE_TOLERANCE for uid, _ in ours), (ours, torch)


def test_a_node_on_openvino_int8_answers_as_a_node_on_torch(
    make_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    files = _one_study_each(tmp_path / "files")
    on_torch, on_openvino = make_node(), make_node(model=OPENVINO)
    for node in (on_torch, on_openvino):
        _send(node, files)
        counts = node.wait_indexed()
        assert counts["by_state"]["done"] == len(files), counts
    with on_openvino.http() as http:
        model = http.get("/health").json()["model"]
    assert model["engine"] == "openvino int8" and model["status"] == "ready"
    with on_torch.http() as http:
        reference = http.get("/health").json()["model"]
    assert reference["engine"] == "torch fp32"
    assert model["identity"] == reference["identity"]  # the index records the model only

    compared = 0
    for i in range(1, len(files) + 1):
        study = f"{ROOT}.{i}"
        ours, theirs = _similar(on_openvino, study, K), _similar(on_torch, study, K + 4)
        _same_ranking(ours, theirs, K)
        compared += len(ours)
    assert compared == len(files) * K

    # an uploaded picture is embedded by the engine too
    upload = files[0].read_bytes()
    answers = []
    for node, limit in ((on_openvino, K), (on_torch, K + 4)):
        with node.http() as http:
            r = http.post("/dicom-web/similar", params={"level": "study", "limit": limit},
                          content=upload, headers={"Content-Type": "application/dicom"})
        assert r.status_code == 200, r.text
        answers.append([(first_value(x, "0020000D"), float(first_value(x, SCORE)))
                        for x in r.json()])
    _same_ranking(answers[0], answers[1], K)
    assert f"{ROOT}.1" not in dict(answers[0])  # its own patient is left out


def test_the_first_start_exports_while_the_node_receives_and_says_so(
    make_node: Callable[..., RunningNode], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="node.supervisor")
    [ct] = _one_study_each(tmp_path / "files")[:1]
    node = make_node(model=OPENVINO)
    exporting = ("exporting the image tower to OpenVINO int8 (first start with this model; "
                 "minutes on a CPU for BiomedCLIP)")
    health: dict[str, Any] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with node.http() as http:
            health = http.get("/health").json()
        if health["model"]["reason"] == exporting or health["model"]["status"] == "ready":
            break
        time.sleep(0.02)
    assert health["model"] == {"status": "loading", "reason": exporting, "identity": None,
                               "engine": None}
    # the node itself is up and receives; similar-case queries wait for the model
    assert health["status"] == "degraded", health
    assert health["reasons"] == ["the model is loading: similar-case queries are refused "
                                 "until it is ready"], health
    _send(node, [ct])
    stored_at = time.time()
    counts = node.wait_indexed()
    assert counts["by_state"]["done"] == 1
    [ready] = [r for r in caplog.records if r.getMessage().startswith("model ready:")]
    assert stored_at < ready.created, "the instance was not received during the export"
    assert ready.getMessage().endswith("(image tower: openvino int8)")
    with node.http() as http:
        model = http.get("/health").json()["model"]
    assert model["status"] == "ready" and model["engine"] == "openvino int8"
    assert list((node.data_dir / "engines").glob("openvino-int8-*/image_tower.xml"))

    status = cli("status", "--data-dir", str(node.data_dir), home=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "model: ready (image tower on openvino int8)" in status.stdout


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"engine": "tensorrt"},
         "setting 'model.engine' 'tensorrt' is not an engine: use auto, torch, openvino"),
        ({"engine_precision": "fp8"},
         "setting 'model.engine_precision' 'fp8' is not an engine precision: use auto, int8, "
         "bf16, fp32"),
        ({"engine": "torch", "engine_precision": "int8"},
         "engine_precision = \"int8\" needs engine = \"openvino\" or \"auto\""),
    ],
)
def test_a_wrong_engine_setting_is_one_line_naming_it(model: dict[str, str], message: str) -> None:
    from node.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as info:
        load_settings(None, {"model": model})
    assert message in str(info.value) and "\n" not in str(info.value)
    defaults = load_settings(None, {}).model
    assert (defaults.engine, defaults.engine_precision) == ("auto", "auto")
