"""The embedder, loaded through ``local-dir:`` as real weights would be (nothing downloaded)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.embedder import Embedder, ModelUnavailable, PrecisionValues, load_embedder
from indexer.normalise import normalise_dataset
from tests._models import write_random_model_dir
from tests.indexer._dicom import PYDICOM_FILES

MODELS = Path(__file__).parent.parent / "assets" / "models"


def test_images_and_texts_become_unit_vectors(tiny_embedder: Embedder) -> None:
    import pydicom

    ct = normalise_dataset(pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm"))
    rng = np.random.default_rng(0)
    pictures = [ct, rng.integers(0, 255, (300, 41, 3), dtype=np.uint8)] * 5  # > batch_size
    v = tiny_embedder.embed_images(pictures)  # type: ignore[arg-type]
    assert v.shape == (10, tiny_embedder.dim) == (10, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v[0], v[2], atol=1e-6)  # deterministic
    assert abs(float(v[0] @ v[1])) < 0.9999  # different pictures, different vectors
    t = tiny_embedder.embed_texts(["left pneumothorax", "no acute findings", "left pneumothorax"])
    assert t.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    assert tiny_embedder.embed_images([]).shape == (0, 32)


def test_the_workers_square_pictures_embed_like_the_full_picture(tiny_embedder: Embedder) -> None:
    from indexer.stages import shrink

    assert tiny_embedder.crops_to_square and tiny_embedder.image_size == 64
    img = np.random.default_rng(3).integers(0, 255, (300, 451, 3), dtype=np.uint8)
    small = shrink(img, 64, crop=True)
    assert small.shape == (64, 64, 3)
    fast = tiny_embedder.embed_tensor(tiny_embedder.to_tensor([small]))
    slow = tiny_embedder.embed_tensor(tiny_embedder.to_tensor([small], fast=False))
    full = tiny_embedder.embed_images([img])
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert float(fast[0] @ full[0]) > 0.999


def test_images_must_be_rgb_uint8(tiny_embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        tiny_embedder.embed_images([np.zeros((8, 8), np.uint8)])  # type: ignore[list-item]


def test_identity_is_the_name_and_a_hash_of_the_weights(tiny_dir: Path, tmp_path: Path) -> None:
    a = load_embedder(path=tiny_dir, device="cpu", precision="fp32")
    b = load_embedder(name=f"local-dir:{tiny_dir}", device="cpu", precision="fp32")
    assert a.identity == b.identity and a.identity.startswith(f"local-dir:{tiny_dir.name}@")
    other = write_random_model_dir(MODELS / "tiny", tmp_path / tiny_dir.name, seed=1)
    c = load_embedder(path=other, device="cpu", precision="fp32")
    assert c.identity != a.identity  # same name, other weights


def test_bf16_autocast_on_cpu_stays_close_to_fp32(tiny_dir: Path) -> None:
    fp32 = load_embedder(path=tiny_dir, device="cpu", precision="fp32")
    bf16 = load_embedder(path=tiny_dir, device="cpu", precision="bf16")
    assert bf16.autocast_dtype == "bf16" and bf16.identity == fp32.identity
    img = [np.random.default_rng(1).integers(0, 255, (70, 70, 3), dtype=np.uint8)]
    assert float(fp32.embed_images(img)[0] @ bf16.embed_images(img)[0]) > 0.98


def test_precision_is_a_member_or_its_name(tiny_dir: Path) -> None:
    from indexer.embedder.precision import resolve_autocast

    by_member = load_embedder(path=tiny_dir, device="cpu", precision=PrecisionValues.FP16)
    by_name = load_embedder(path=tiny_dir, device="cpu", precision="fp16")
    assert by_member.autocast_dtype is by_name.autocast_dtype is PrecisionValues.FP16
    assert resolve_autocast("fp32", "cpu") is resolve_autocast(PrecisionValues.FP32, "cpu") is None
    assert resolve_autocast("bf16", "cpu") is PrecisionValues.BF16
    assert "autocast='fp16'" in repr(by_member)


def test_missing_folder_says_how_to_provide_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as info:
        load_embedder(path=tmp_path / "nowhere")
    msg = str(info.value)
    assert "does not exist" in msg and "open_clip_config.json" in msg and "[model] path" in msg


def test_folder_without_weights_is_refused_not_randomly_initialised(tmp_path: Path) -> None:
    shutil.copy(MODELS / "tiny" / "open_clip_config.json", tmp_path)
    with pytest.raises(ModelUnavailable, match="no weights"):
        load_embedder(name=f"local-dir:{tmp_path}")


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelUnavailable, match=r"no open_clip_config\.json"):
        load_embedder(path=tmp_path)


def test_hf_text_tower_without_its_config_is_refused(tmp_path: Path) -> None:
    shutil.copy(MODELS / "biomedclip" / "open_clip_config.json", tmp_path)
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelUnavailable, match=r"no config\.json"):
        load_embedder(path=tmp_path)


def test_corrupt_weights_are_model_unavailable(tiny_dir: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_dir / "open_clip_config.json", tmp_path)
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"garbage")
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        load_embedder(path=tmp_path, device="cpu")


def test_a_weights_file_needs_a_builtin_architecture(tiny_dir: Path) -> None:
    with pytest.raises(ModelUnavailable, match="built-in"):
        load_embedder(path=tiny_dir / "open_clip_pytorch_model.bin")


def test_arguments_are_validated(tiny_dir: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        load_embedder(path=tiny_dir, precision="fp8")
    with pytest.raises(ValueError, match=r"precision must be one of auto, fp32, fp16, bf16, got 'fp8'"):
        load_embedder(path=tiny_dir, precision="fp8")
    with pytest.raises(ValueError, match="batch_size"):
        load_embedder(path=tiny_dir, batch_size=0)


@pytest.mark.slow
def test_biomedclip_architecture_loads_offline_from_a_local_folder(biomedclip_dir: Path) -> None:
    """BiomedCLIP's real architecture (timm ViT-B/16 + PubMedBERT-shaped BERT), random
    weights, through the same ``local-dir:`` setting a hospital uses for the real ones."""
    folder = biomedclip_dir
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["vision_cfg"]["timm_model_name"] == "vit_base_patch16_224"
    emb = load_embedder(name=f"local-dir:{folder}", device="cpu", batch_size=2)
    assert emb.dim == 512 and emb.image_size == 224
    v = emb.embed_images([np.full((256, 300, 3), 90, np.uint8)])
    t = emb.embed_texts(["left pleural effusion"])
    assert v.shape == t.shape == (1, 512)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate([v, t]), axis=1), 1.0, atol=1e-3)


# -- the image tower's engine ---------------------------------------------------------


def _real_pictures() -> list[np.ndarray]:
    """A CT, an MR and a colour secondary capture from pydicom's test files."""
    import pydicom

    names = ("CT_small.dcm", "MR_small.dcm", "SC_rgb_dcmtk_+eb+cr.dcm")
    return [normalise_dataset(pydicom.dcmread(PYDICOM_FILES / n)).pixels for n in names]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


def test_on_a_cpu_the_image_tower_runs_on_the_engine(
    tiny_dir: Path, tiny_embedder: Embedder, engine_cache: Path
) -> None:
    """Same identity, same dimension, vectors within the fidelity threshold of torch fp32;
    the text tower stays on torch (identical vectors)."""
    from indexer.engines import MIN_COSINE

    emb = load_embedder(path=tiny_dir, device="cpu", precision="fp32", engine="openvino",
                        engine_precision="int8", cache_dir=engine_cache)
    assert emb.engine == "openvino int8" and tiny_embedder.engine == "torch fp32"
    assert emb.identity == tiny_embedder.identity and emb.dim == tiny_embedder.dim
    assert "engine='openvino int8'" in repr(emb)
    pictures = _real_pictures()
    ours, torch_fp32 = emb.embed_images(pictures), tiny_embedder.embed_images(pictures)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float(np.sum(ours * torch_fp32, axis=1).min()) >= MIN_COSINE
    tensor = emb.to_tensor(pictures)
    np.testing.assert_allclose(emb.embed_tensor(tensor), ours, atol=1e-6)
    texts = ["left pneumothorax", "no acute findings"]
    np.testing.assert_array_equal(emb.embed_texts(texts), tiny_embedder.embed_texts(texts))


def test_the_first_load_exports_and_says_so_the_next_reads_the_cache(
    tiny_dir: Path, tmp_path: Path
) -> None:
    said: list[str] = []
    load_embedder(path=tiny_dir, device="cpu", engine="auto", engine_precision="bf16",
                  cache_dir=tmp_path, on_progress=said.append)
    assert said == ["exporting the image tower to OpenVINO bf16 (first start with this model; "
                    "minutes on a CPU for BiomedCLIP)"]
    [artefact] = list(tmp_path.iterdir())
    written = (artefact / "image_tower.bin").stat().st_mtime_ns
    said.clear()
    again = load_embedder(path=tiny_dir, device="cpu", engine="auto", engine_precision="bf16",
                          cache_dir=tmp_path, on_progress=said.append)
    assert again.engine == "openvino bf16"
    assert said == ["checking the cached OpenVINO bf16 image tower against torch fp32"]
    assert (artefact / "image_tower.bin").stat().st_mtime_ns == written


def test_the_export_prints_nothing_on_the_console(
    tiny_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """NNCF's progress bars, torch's tracer warnings and the decoders' complaints about
    pydicom's odd test files go to the log at DEBUG, not to the node's console."""
    capfd.readouterr()
    emb = load_embedder(path=tiny_dir, device="cpu", engine="openvino", engine_precision="int8",
                        cache_dir=tmp_path)
    assert emb.engine == "openvino int8"
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_engine_torch_turns_the_engine_off(tiny_dir: Path, tmp_path: Path) -> None:
    emb = load_embedder(path=tiny_dir, device="cpu", precision="bf16", engine="torch",
                        cache_dir=tmp_path)
    assert emb.engine == "torch bf16" and list(tmp_path.iterdir()) == []


def test_engine_settings_are_checked(tiny_dir: Path) -> None:
    with pytest.raises(ValueError, match="needs a cache folder"):
        load_embedder(path=tiny_dir, device="cpu", engine="auto")
    with pytest.raises(ValueError, match=r"engine must be one of \('auto', 'torch', 'openvino'\), got 'tensorrt'"):
        load_embedder(path=tiny_dir, device="cpu", engine="tensorrt")
    with pytest.raises(ValueError, match="int8 needs the openvino engine"):
        load_embedder(path=tiny_dir, device="cpu", engine="torch", engine_precision="int8")


def test_an_image_encoder_of_another_model_is_refused(tiny_embedder: Embedder) -> None:
    from indexer.engines import TorchImageEncoder

    foreign = TorchImageEncoder(tiny_embedder._model.visual, identity="other@123", precision="fp32")
    with pytest.raises(ValueError, match="image_encoder is an engine of 'other@123'"):
        Embedder(model=tiny_embedder._model, preprocess=tiny_embedder._preprocess,
                 tokenizer=tiny_embedder._tokenizer, name="x", image_encoder=foreign,
                 identity=tiny_embedder.identity)
