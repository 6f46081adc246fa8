"""Volume sampling end to end, through a running node: a CT series gives the same sample
whether it arrives by C-STORE (dcmtk's storescu, shuffled), STOW-RS (shuffled parts) or
`precedent index import`; a late slice re-decides it; the slices left out are visible,
with their reason, in `precedent index status`; objects that are not cases never come
back as similar cases."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom.dataset import FileDataset

from database import connect
from indexer import LevelValues, queue
from indexer.image_plane import slice_header
from indexer.index import IndexSet
from indexer.sampling import choose_slices
from tests._peers import storescu
from tests._synthetic import ct_instance, multipart_related, to_bytes, write_files
from tests.conftest import RunningNode
from tests.indexer._dicom import pydicom_data_files

pytestmark = pytest.mark.slow

K = 4
SAMPLING = {"slices_per_series": K, "series_quiet_s": 3600}  # complete: the stable event


def _uid() -> str:
    """A short UID (``2.25.`` + a random integer) that leaves room for a slice number."""
    return f"2.25.{uuid.uuid4().int % 10**30}"


def _volume(n: int, *, study: str, series: str) -> list[FileDataset]:
    """``n`` axial slices 3 mm apart; instance numbers count down the axis."""
    out = []
    for i in range(n):
        ds = ct_instance(study_uid=study, series_uid=series, patient_id="PVOL",
                         finding=("nodule", "effusion", "normal")[i % 3], size=48,
                         instance_number=500 - i, seed=900 + i)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{series}.{i + 1}"
        ds.ImagePositionPatient = [-120.0, -120.0, -300.0 + 3.0 * i]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        out.append(ds)
    return out


def _done(db: Path, uids: list[str]) -> set[str]:
    states = queue.states_of(connect(db), uids)
    assert set(states.values()) <= {queue.WorkStateValues.DONE,
                                    queue.WorkStateValues.NOT_SAMPLED}, states
    return {u for u, s in states.items() if s is queue.WorkStateValues.DONE}


def _series_vector(data_dir: Path, series: str) -> np.ndarray:
    ix = IndexSet.open(catalog=data_dir / "catalog.sqlite", index_dir=data_dir / "index")
    vec = ix.get_vector(LevelValues.SERIES, series)
    assert vec is not None
    return vec


def _stow(node: RunningNode, datasets: list[FileDataset]) -> None:
    body, content_type = multipart_related([("application/dicom", to_bytes(ds))
                                            for ds in datasets])
    response = httpx.post(f"{node.dicomweb_url}/studies", content=body, timeout=120,
                          headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text


def _cli(*args: str, model: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PRECEDENT_MODEL__PRECISION": "fp32", "PRECEDENT_MODEL__ENGINE": "torch",
           "PRECEDENT_WORKER__DECODE_PROCESSES": "0",
           "PRECEDENT_INDEXER__SLICES_PER_SERIES": str(K),
           "PRECEDENT_INDEXER__SERIES_QUIET_S": "1", "PATH": "/usr/bin:/bin"}
    extra = ["--model", f"local-dir:{model}"] if model else []
    return subprocess.run([sys.executable, "-m", "node", *args, *extra],
                          capture_output=True, text=True, timeout=300, env=env)


def test_the_same_sample_by_c_store_stow_and_import_and_a_late_slice(
    make_node, tmp_path: Path, tiny_model_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    study, series = _uid(), _uid()
    n = 26
    volume = _volume(n, study=study, series=series)
    uids = [str(ds.SOPInstanceUID) for ds in volume]
    expected = set(choose_slices([slice_header(ds) for ds in volume], K))
    rng = random.Random(11)

    by_dimse = make_node(indexer=SAMPLING)
    files = write_files(volume, tmp_path / "files")
    rng.shuffle(files)
    assert storescu(by_dimse.dimse_port, files, called=by_dimse.ae_title).returncode == 0
    by_dimse.wait_indexed()
    assert _done(by_dimse.settings.db_path, uids) == expected

    by_stow = make_node(indexer=SAMPLING)
    parts = volume[:]
    rng.shuffle(parts)
    _stow(by_stow, parts[:13])
    _stow(by_stow, parts[13:])
    by_stow.wait_indexed()
    assert _done(by_stow.settings.db_path, uids) == expected

    imported = tmp_path / "imported"
    result = _cli("index", "import", str(tmp_path / "files"), "--data-dir", str(imported),
                  model=tiny_model_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _done(imported / "catalog.sqlite", uids) == expected

    vectors = [_series_vector(d, series) for d in
               (by_dimse.data_dir, by_stow.data_dir, imported)]
    for vec in vectors[1:]:
        np.testing.assert_allclose(vec, vectors[0], atol=1e-5)

    # `precedent index status` shows the slices left out, and why
    status = _cli("index", "status", "--json", "--data-dir", str(imported))
    data = json.loads(status.stdout)
    assert data["by_state"]["not_sampled"] == n - K and data["by_state"]["done"] == K
    [(reason, count)] = data["not_sampled_reasons"].items()
    assert count == n - K and reason.startswith(f"not sampled: its volume series is embedded "
                                                f"by {K} evenly spaced slices")
    text = _cli("index", "status", "--data-dir", str(imported)).stdout
    assert f"not_sampled {n - K}" in text and f"not sampled: {n - K} × not sampled:" in text

    # a slice arriving after the choice re-decides the series, by C-STORE as by any path
    late = _volume(n + 1, study=study, series=series)[-1]
    late_file = write_files([late], tmp_path / "late")
    assert storescu(by_dimse.dimse_port, late_file, called=by_dimse.ae_title).returncode == 0
    by_dimse.wait_indexed()
    everything = [*volume, late]
    again = set(choose_slices([slice_header(ds) for ds in everything], K))
    assert again != expected
    assert _done(by_dimse.settings.db_path, [*uids, str(late.SOPInstanceUID)]) == again
    index_set = by_dimse.services.model.index_set
    assert index_set is not None and index_set.count("instance") == K


def test_a_slice_left_out_says_so_and_a_segmentation_is_never_a_similar_case(
    make_node, tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    node = make_node(indexer=SAMPLING)
    study, series = _uid(), _uid()
    volume = _volume(12, study=study, series=series)
    _stow(node, volume)
    seg = next(p for p in pydicom_data_files() if p.name == "liver.dcm")
    assert storescu(node.dimse_port, [seg], called=node.ae_title).returncode == 0
    node.wait_indexed()
    chosen = choose_slices([slice_header(ds) for ds in volume], K)
    left_out = next(str(ds.SOPInstanceUID) for ds in volume if ds.SOPInstanceUID not in chosen)
    with node.http() as client:
        answer = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/"
                            f"{left_out}/similar")
        assert answer.status_code == 409
        detail = answer.json()["detail"]
        assert "not sampled" in detail and "its series or study" in detail
        # the SEG is catalogued and retrievable, never embedded, never an answer
        import pydicom

        meta = pydicom.dcmread(seg, stop_before_pixels=True)
        seg_uids = (meta.StudyInstanceUID, meta.SeriesInstanceUID, meta.SOPInstanceUID)
        why = client.get("/dicom-web/studies/{}/series/{}/instances/{}/similar".format(*seg_uids))
        assert why.status_code == 409
        assert "not an image for retrieval (SOP class Segmentation Storage" in why.json()["detail"]
        hits = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{chosen[0]}"
                          "/similar", params={"excludePatient": "false", "limit": 100})
        assert hits.status_code == 200
        found = {item["00080018"]["Value"][0] for item in hits.json()}
        assert seg_uids[2] not in found and found <= set(chosen)
        retrieved = client.get("/dicom-web/studies/{}/series/{}/instances/{}".format(*seg_uids),
                               headers={"Accept": "multipart/related; type=application/dicom"})
        assert retrieved.status_code == 200
