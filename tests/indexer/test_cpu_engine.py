"""The image tower's CPU engine: OpenVINO vectors against torch fp32 on real test images,
its cache, and the refusal of an engine whose vectors are not faithful."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import torch

from indexer.embedder import Embedder, load_embedder
from indexer.engines import (
    MIN_COSINE,
    EngineValues,
    FidelityReport,
    ImageEncoder,
    TorchImageEncoder,
    candidates,
    check_fidelity,
    open_image_encoder,
    verification_pictures,
)
from indexer.errors import EngineRefused
from indexer.normalise import NormalisedImage, normalise_dataset
from tests._models import write_random_model_dir
from tests.indexer._dicom import pydicom_data_files

MODELS = Path(__file__).parent.parent / "assets" / "models"


def _visual(embedder: Embedder) -> Any:
    return embedder._model.visual  # what the embedder will hand over at integration


def _preprocess(embedder: Embedder) -> Any:
    return lambda pictures: embedder.to_tensor(pictures).numpy()


def _open(embedder: Embedder, cache: Path, **kw: Any) -> ImageEncoder:
    return open_image_encoder(
        _visual(embedder),
        identity=embedder.identity,
        image_size=embedder.image_size,
        preprocess=_preprocess(embedder),
        cache_dir=cache,
        **{"engine": "openvino", "precision": "int8", **kw},
    )


@pytest.fixture(scope="module")
def test_batch_pictures() -> list[np.ndarray]:
    """Every pydicom-data and pydicom test file that normalises to a picture, in path
    order (pydicom-data's first: the verification set never holds those)."""
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    pictures = []
    for path in pydicom_data_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = normalise_dataset(pydicom.dcmread(path, force=True))
            except Exception:  # noqa: BLE001 - not a data set (README, JSON…): not our input
                continue
        if isinstance(result, NormalisedImage):
            pictures.append(result.pixels)
    assert len(pictures) > 100  # pydicom's own pictures and pydicom-data's
    return pictures


@pytest.fixture(scope="module")
def test_batch(tiny_embedder: Embedder, test_batch_pictures: list[np.ndarray]) -> np.ndarray:
    """The test pictures, preprocessed for the tiny model."""
    pictures = test_batch_pictures
    return np.concatenate([tiny_embedder.to_tensor(pictures[i : i + 32]).numpy() for i in range(0, len(pictures), 32)])


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


def test_int8_vectors_match_torch_fp32_on_every_test_image(
    tiny_embedder: Embedder, test_batch: np.ndarray, int8_cache: Path
) -> None:
    encoder = _open(tiny_embedder, int8_cache)
    assert encoder.engine == "openvino int8"
    assert encoder.identity == tiny_embedder.identity  # the model's identity, not the engine's
    reference = TorchImageEncoder(_visual(tiny_embedder), identity="ref", precision="fp32")
    ours = np.concatenate([encoder.encode(test_batch[i : i + 8]) for i in range(0, len(test_batch), 8)])
    torch_fp32 = reference.encode(test_batch)
    cosines = np.sum(ours * torch_fp32, axis=1)
    assert ours.shape == torch_fp32.shape == (len(test_batch), 32)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines.min() >= MIN_COSINE, f"worst picture {int(cosines.argmin())}: {cosines.min():.5f}"


def test_the_torch_reference_is_the_embedders_own_forward(tiny_embedder: Embedder) -> None:
    pictures = [np.random.default_rng(5).integers(0, 255, (64, 64, 3), dtype=np.uint8)] * 3
    tensor = tiny_embedder.to_tensor(pictures)
    torch_fp32 = TorchImageEncoder(_visual(tiny_embedder), identity="x", precision="fp32")
    np.testing.assert_allclose(torch_fp32.encode(tensor.numpy()), tiny_embedder.embed_tensor(tensor), atol=1e-5)
    bf16 = TorchImageEncoder(_visual(tiny_embedder), identity="x", precision="bf16")
    assert float(np.sum(bf16.encode(tensor.numpy())[0] * torch_fp32.encode(tensor.numpy())[0])) > 0.999


def test_the_export_is_cached_and_checked_again_when_reopened(
    tiny_embedder: Embedder, test_batch: np.ndarray, int8_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _open(tiny_embedder, int8_cache)
    [folder] = [p for p in int8_cache.iterdir() if p.name.startswith("openvino-int8-")]
    meta = json.loads((folder / "engine.json").read_text())
    assert meta["identity"] == tiny_embedder.identity and meta["precision"] == "int8"
    assert meta["fidelity"]["min_cosine"] >= MIN_COSINE and meta["fidelity"]["pictures"] > 20
    written = (folder / "image_tower.bin").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="indexer.engines"):
        again = _open(tiny_embedder, int8_cache)
    assert (folder / "image_tower.bin").stat().st_mtime_ns == written  # not exported again
    assert any(f"from {folder}" in r.getMessage() and "passes" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(first.encode(test_batch[:8]), again.encode(test_batch[:8]))


def test_a_badly_calibrated_int8_engine_is_refused_and_torch_takes_over(
    tiny_embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Calibrated on blank pictures, int8 clips every real activation: refused."""
    blank = np.zeros((8, 3, 64, 64), np.float32)
    with caplog.at_level(logging.WARNING, logger="indexer.engines"):
        encoder = _open(tiny_embedder, tmp_path, calibration=blank)
    assert isinstance(encoder, TorchImageEncoder) and encoder.engine == "torch bf16"
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "openvino int8 fails the fidelity check: min cosine" in line and "threshold 0.995" in line
    assert line.endswith("; torch bf16 runs the image tower instead")  # what runs now
    [folder] = list(tmp_path.iterdir())
    assert (folder / "refused.json").is_file() and not (folder / "image_tower.xml").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="indexer.engines"):
        assert isinstance(_open(tiny_embedder, tmp_path, calibration=blank), TorchImageEncoder)
    assert any("remembered in" in r.getMessage() for r in caplog.records)  # not exported again


def test_auto_falls_back_from_a_refused_int8_to_openvino_bf16(
    tiny_embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blank = np.zeros((8, 3, 64, 64), np.float32)
    with caplog.at_level(logging.WARNING, logger="indexer.engines"):
        encoder = _open(tiny_embedder, tmp_path, engine="auto", precision="auto", calibration=blank)
    assert encoder.engine == "openvino bf16" and encoder.identity == tiny_embedder.identity
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith("engine openvino int8 refused: openvino int8 fails the fidelity check")
    assert line.endswith("; trying openvino bf16 instead")


class _UnexportableTower(torch.nn.Module):
    """An image tower with an operation OpenVINO's PyTorch front end cannot convert."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.special.i0(x).mean(dim=(2, 3)))


def test_a_tower_that_cannot_be_exported_runs_on_torch_and_is_tried_again_next_time(
    tiny_embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tower = _UnexportableTower().eval()
    with caplog.at_level(logging.WARNING, logger="indexer.engines"):
        encoder = open_image_encoder(
            tower, identity="unexportable@0", image_size=64, preprocess=_preprocess(tiny_embedder),
            cache_dir=tmp_path, engine="openvino", precision="bf16",
        )
    assert isinstance(encoder, TorchImageEncoder) and encoder.engine == "torch bf16"
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith("engine openvino bf16 refused: the export failed (OpConversionFailure")
    assert line.endswith("; torch bf16 runs the image tower instead") and "\n" not in line
    assert list(tmp_path.iterdir()) == []  # not remembered: the cause may pass (a library update)
    assert encoder.encode(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 8)


def test_a_cached_export_of_other_weights_is_refused_when_loaded(
    tiny_embedder: Embedder, tiny_dir: Path, tmp_path: Path
) -> None:
    """A corrupt or foreign artefact under the right key fails the load-time check."""
    ours = tmp_path / "ours"
    _open(tiny_embedder, ours, precision="bf16")
    other_dir = write_random_model_dir(MODELS / "tiny", tmp_path / "other-model", seed=7)
    other = load_embedder(path=other_dir, device="cpu", precision="fp32")
    _open(other, tmp_path / "other", precision="bf16")
    [mine] = list(ours.iterdir())
    [theirs] = list((tmp_path / "other").iterdir())
    for name in ("image_tower.xml", "image_tower.bin"):
        shutil.copy(theirs / name, mine / name)
    encoder = _open(tiny_embedder, ours, precision="bf16")
    assert isinstance(encoder, TorchImageEncoder)


def test_check_fidelity_reports_and_refuses(tiny_embedder: Embedder) -> None:
    pictures = verification_pictures()
    assert len(pictures) > 20 and all(p.dtype == np.uint8 and p.shape[2] == 3 for p in pictures)
    batch = tiny_embedder.to_tensor(pictures[:8]).numpy()
    torch_fp32 = TorchImageEncoder(_visual(tiny_embedder), identity="x", precision="fp32")
    reference = torch_fp32.encode(batch)
    report = check_fidelity(torch_fp32, batch, reference)
    assert isinstance(report, FidelityReport) and report.passed and report.min_cosine > 0.99999
    with pytest.raises(EngineRefused, match=r"torch fp32 fails the fidelity check: min cosine -1\.00000 .* threshold 0\.995"):
        check_fidelity(torch_fp32, batch, -reference)
    with pytest.raises(ValueError, match="as many reference vectors"):
        check_fidelity(torch_fp32, batch, reference[:3])


def test_candidates_follow_the_settings() -> None:
    assert candidates("auto", "auto") == [("openvino", "int8"), ("openvino", "bf16"), ("torch", "bf16")]
    assert candidates("openvino", "fp32") == [("openvino", "fp32"), ("torch", "fp32")]
    assert candidates(EngineValues.TORCH, "auto") == [("torch", "bf16")]
    with pytest.raises(ValueError, match="int8 needs the openvino engine"):
        candidates("torch", "int8")
    with pytest.raises(ValueError, match="engine must be one of"):
        candidates("tensorrt", "auto")
    with pytest.raises(ValueError, match="precision must be one of"):
        candidates("auto", "fp8")


@pytest.fixture(scope="module")
def biomedclip(biomedclip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Embedder, Path, ImageEncoder]:
    """BiomedCLIP's architecture (random weights) and its OpenVINO bf16 export, checked on
    four of the verification pictures (the node checks all 31; this keeps the test short),
    cached for the module."""
    embedder = load_embedder(path=biomedclip_dir, device="cpu", precision="fp32", batch_size=8)
    cache = tmp_path_factory.mktemp("biomedclip-engines")
    encoder = _open(embedder, cache, precision="bf16", pictures=verification_pictures()[:4])
    return embedder, cache, encoder


@pytest.mark.slow
def test_biomedclip_architecture_exports_faithfully(
    biomedclip: tuple[Embedder, Path, ImageEncoder], test_batch_pictures: list[np.ndarray]
) -> None:
    """The timm ViT-B/16 tower exports to OpenVINO bf16 and stays within the threshold of
    torch fp32 on pydicom-data pictures it was never checked on. int8 of this tower (two
    minutes of NNCF on two cores) is measured by bench/cpu_engine.py."""
    embedder, cache, encoder = biomedclip
    assert encoder.engine == "openvino bf16" and encoder.identity == embedder.identity
    [artefact] = list(cache.iterdir())
    meta = json.loads((artefact / "engine.json").read_text())
    assert meta["fidelity"]["min_cosine"] >= MIN_COSINE and meta["fidelity"]["pictures"] == 4
    held_out = embedder.to_tensor(test_batch_pictures[:6]).numpy()  # pydicom-data's
    torch_fp32 = TorchImageEncoder(_visual(embedder), identity="ref", precision="fp32").encode(held_out)
    ours = encoder.encode(held_out)
    assert ours.shape == (6, 512)
    assert float(np.sum(ours * torch_fp32, axis=1).min()) >= MIN_COSINE


@pytest.mark.slow
def test_biomedclip_export_is_reopened_from_the_cache(
    biomedclip: tuple[Embedder, Path, ImageEncoder],
) -> None:
    embedder, cache, first = biomedclip
    again = _open(embedder, cache, precision="bf16", pictures=verification_pictures()[:4])
    picture = embedder.to_tensor([np.full((256, 300, 3), 90, np.uint8)]).numpy()
    assert again.engine == "openvino bf16"
    np.testing.assert_allclose(again.encode(picture), first.encode(picture), atol=1e-6)
