"""The embedder: an open_clip model that turns pictures and text into unit vectors.

torch and open_clip are imported only inside the functions that need them (the node,
the CLI and most tests start without them).

The model reference (``[model] name``) is any open_clip reference:

- a built-in architecture name (``ViT-B-16``), with ``pretrained`` a tag or a weights file;
- ``hf-hub:ORG/REPO`` (downloaded on first use where the hub can be reached);
- ``local-dir:PATH``: a folder with ``open_clip_config.json`` and the weights
  (``open_clip_pytorch_model.bin`` or ``.safetensors``). When the text tower is a
  Hugging Face model (BiomedCLIP's PubMedBERT) the folder also holds that model's
  ``config.json`` and tokenizer files (``vocab.txt``, ``tokenizer_config.json``); the
  text tower is then built from the folder, so nothing is fetched.

``path`` (``model.path``) names such a folder directly (it becomes ``local-dir:PATH``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from indexer.errors import ModelUnavailable
from indexer.normalise import NormalisedImage

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "ModelUnavailable",
    "PrecisionValues",
    "load_embedder",
    "write_random_model_dir",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
_LOCAL = "local-dir:"
_CHECKPOINT_GLOBS = ("*.safetensors", "*.bin", "*.pth", "*.pt")
_HOW_TO = (
    "To run offline, put the model in a folder: open_clip_config.json and "
    "open_clip_pytorch_model.bin from the Hugging Face repository "
    "(for BiomedCLIP also the text model's config.json, vocab.txt and tokenizer_config.json "
    "from microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract), then set [model] path "
    "(PRECEDENT_MODEL__PATH) to that folder, or name it as 'local-dir:/that/folder'. "
    "The node keeps receiving meanwhile; the queue waits."
)

ImageLike = NormalisedImage | npt.NDArray[np.uint8]


class PrecisionValues:
    """Allowed ``precision`` settings (plain strings)."""

    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    ALL = (AUTO, FP32, FP16, BF16)


class Embedder:
    """An open_clip model, its preprocessing and tokenizer, on one device.

    ``embed_images`` and ``embed_texts`` return float32 arrays of shape ``(n, dim)``
    whose rows have unit length. ``identity`` is the model reference plus a short hash
    of the weights: the index stores it and refuses vectors of another identity.
    """

    def __init__(
        self,
        *,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        name: str,
        device: str = "cpu",
        autocast_dtype: str | None = None,
        batch_size: int = 32,
        identity: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if autocast_dtype not in (None, PrecisionValues.FP16, PrecisionValues.BF16):
            raise ValueError(
                f"autocast_dtype must be None, 'fp16' or 'bf16', got {autocast_dtype!r}"
            )
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self.name = name
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.batch_size = batch_size
        self.image_size = _image_size(model)
        self._normalize = _standard_preprocess(preprocess, self.image_size)
        self.identity = identity or f"{_display_name(name)}@{weights_hash(model)}"
        self.dim = int(self.embed_images([np.zeros((8, 8, 3), np.uint8)]).shape[1])

    def __repr__(self) -> str:
        return (
            f"Embedder(identity={self.identity!r}, dim={self.dim}, device={self.device!r}, "
            f"autocast={self.autocast_dtype!r})"
        )

    def _autocast(self) -> Any:
        import torch

        if self.autocast_dtype is None:
            return torch.autocast(self.device.split(":")[0], enabled=False)
        dtype = torch.bfloat16 if self.autocast_dtype == PrecisionValues.BF16 else torch.float16
        return torch.autocast(self.device.split(":")[0], dtype=dtype)

    @property
    def crops_to_square(self) -> bool:
        """True when the model's preprocessing is resize-shortest-side + centre crop: the
        worker then hands over ``image_size``² pictures, which skip the PIL transforms."""
        return self._normalize is not None

    def to_tensor(self, images: Sequence[ImageLike], *, fast: bool = True) -> torch.Tensor:
        """The model's own preprocessing (resize, crop, normalise) on a list of pictures.

        Pictures already ``image_size``² (what the worker sends) are only normalised, as
        one tensor operation, when the preprocessing is the standard one.
        """
        import torch
        from PIL import Image

        arrays = []
        for item in images:
            pixels = item.pixels if isinstance(item, NormalisedImage) else item
            if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
                raise ValueError(f"images must be H×W×3 uint8, got {pixels.dtype} {pixels.shape}")
            arrays.append(pixels)
        size = self.image_size
        square = all(a.shape[:2] == (size, size) for a in arrays)
        if fast and self._normalize is not None and square:
            mean, std = self._normalize
            x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
            normalised: torch.Tensor = (x - mean) / std
            return normalised
        return torch.stack([self._preprocess(Image.fromarray(a, "RGB")) for a in arrays])

    def embed_tensor(self, batch: torch.Tensor) -> npt.NDArray[np.float32]:
        """One forward of the image tower on preprocessed pixels (no batching)."""
        import torch

        with torch.inference_mode(), self._autocast():
            feats = self._model.encode_image(batch.to(self.device, non_blocking=True))
        return _unit_rows(feats.float().cpu().numpy())

    def embed_images(self, images: Sequence[ImageLike]) -> npt.NDArray[np.float32]:
        """Embed pictures (H×W×3 uint8 or :class:`NormalisedImage`) in batches."""
        out = [
            self.embed_tensor(self.to_tensor(images[i : i + self.batch_size]))
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, getattr(self, "dim", 0)), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts (a report, a query) in batches, with the model's own tokenizer."""
        import torch

        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(list(texts[i : i + self.batch_size]))
            with torch.inference_mode(), self._autocast():
                feats = self._model.encode_text(tokens.to(self.device))
            out.append(_unit_rows(feats.float().cpu().numpy()))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def _standard_preprocess(preprocess: Any, size: int) -> tuple[Any, Any] | None:
    """(mean, std) tensors when ``preprocess`` is Resize(shortest side, bicubic) +
    CenterCrop(size) + to-tensor + Normalize; otherwise None (use the transforms)."""
    names = [type(t).__name__ for t in getattr(preprocess, "transforms", [])]
    if names[:2] != ["Resize", "CenterCrop"] or names[-1] != "Normalize":
        return None
    if not set(names[2:-1]) <= {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb"}:
        return None
    steps = preprocess.transforms
    resize, crop, norm = steps[0], steps[1], steps[-1]
    if str(getattr(resize, "interpolation", "")).lower().find("bicubic") < 0:
        return None
    if tuple(crop.size) != (size, size) or resize.size not in (size, [size], (size,)):
        return None
    import torch

    mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    return mean, std


def _unit_rows(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _image_size(model: Any) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    if isinstance(size, (tuple, list)):
        return int(max(size))
    return int(size)


def _display_name(name: str) -> str:
    if name.startswith(_LOCAL):
        return _LOCAL + Path(name[len(_LOCAL) :]).resolve().name
    return name


def weights_hash(model: Any, length: int = 12) -> str:
    """A short BLAKE2b hash over the model's state dict (names and bytes, in order)."""
    h = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        t = tensor.detach().float().cpu().contiguous()
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:length]


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable(f"device {device!r} was asked for but CUDA is not available")
    return device


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _resolve_autocast(precision: str, device: str) -> str | None:
    if precision not in PrecisionValues.ALL:
        raise ValueError(f"precision must be one of {PrecisionValues.ALL}, got {precision!r}")
    if precision == PrecisionValues.FP32:
        return None
    if precision != PrecisionValues.AUTO:
        return precision
    if device.startswith("cuda"):
        import torch

        return PrecisionValues.BF16 if torch.cuda.is_bf16_supported() else PrecisionValues.FP16
    return PrecisionValues.BF16 if _cpu_has_bf16() else None


def _local_dir_checks(folder: Path) -> dict[str, Any]:
    """The folder's open_clip config, after checking that weights are there too."""
    if not folder.is_dir():
        raise ModelUnavailable(f"model folder {folder} does not exist. {_HOW_TO}")
    cfg_file = folder / "open_clip_config.json"
    if not cfg_file.is_file():
        raise ModelUnavailable(f"model folder {folder} has no open_clip_config.json. {_HOW_TO}")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        model_cfg = cfg["model_cfg"]
    except (ValueError, KeyError) as exc:
        raise ModelUnavailable(f"{cfg_file} is not an open_clip config ({exc}). {_HOW_TO}") from exc
    if not any(any(folder.glob(g)) for g in _CHECKPOINT_GLOBS):
        raise ModelUnavailable(
            f"model folder {folder} has a config but no weights (*.bin, *.safetensors). {_HOW_TO}"
        )
    return dict(model_cfg)


def _local_text_override(folder: Path, model_cfg: dict[str, Any]) -> dict[str, Any]:
    """For a Hugging Face text tower, build it from the folder's config.json (offline)."""
    text_cfg = model_cfg.get("text_cfg", {})
    if "hf_model_name" not in text_cfg:
        return {}
    if not (folder / "config.json").is_file():
        raise ModelUnavailable(
            f"model folder {folder} has a Hugging Face text tower "
            f"({text_cfg['hf_model_name']}) but no config.json for it. {_HOW_TO}"
        )
    new_text = copy.deepcopy(text_cfg)
    new_text["hf_model_name"] = str(folder)
    new_text["hf_model_pretrained"] = False  # the CLIP checkpoint carries the text weights
    return {"text_cfg": new_text}


def load_embedder(
    *,
    name: str = DEFAULT_MODEL,
    path: str | os.PathLike[str] | None = None,
    pretrained: str | None = None,
    device: str = "auto",
    precision: str = PrecisionValues.AUTO,
    batch_size: int = 32,
) -> Embedder:
    """Build an :class:`Embedder` from an open_clip model reference.

    ``path``, when given, is a local model folder and wins over ``name``. Raises
    :class:`ModelUnavailable` (saying why and how to provide the weights) when the model
    cannot be loaded: no hub, no folder, no weights, no tokenizer files.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if precision not in PrecisionValues.ALL:
        raise ValueError(f"precision must be one of {PrecisionValues.ALL}, got {precision!r}")
    if path is not None:
        p = Path(path)
        if p.is_file():
            if name.startswith(("hf-hub:", _LOCAL)):
                raise ModelUnavailable(
                    f"model path {p} is a weights file; give the architecture as a built-in "
                    f"name (e.g. ViT-B-16) or make a folder. {_HOW_TO}"
                )
            pretrained = str(p)
        else:
            name = _LOCAL + str(p)

    overrides: dict[str, Any] = {}
    if name.startswith(_LOCAL):
        folder = Path(name[len(_LOCAL) :]).expanduser().resolve()
        name = _LOCAL + str(folder)
        overrides = _local_text_override(folder, _local_dir_checks(folder))

    try:
        import open_clip
        import torch
    except ImportError as exc:
        raise ModelUnavailable(f"torch/open_clip cannot be imported ({exc})") from exc

    dev = _resolve_device(device)
    autocast = _resolve_autocast(precision, dev)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=dev, precision="fp32", **overrides
        )
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"[:600]
        raise ModelUnavailable(f"model {name!r} could not be loaded ({reason}). {_HOW_TO}") from exc
    model.eval()
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    embedder = Embedder(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        name=name,
        device=dev,
        autocast_dtype=autocast,
        batch_size=batch_size,
    )
    log.info("model loaded: %r", embedder)
    return embedder


def write_random_model_dir(
    config_dir: str | os.PathLike[str], dest: str | os.PathLike[str], *, seed: int = 0
) -> Path:
    """Make a ``local-dir:`` model folder with random weights from a shipped config folder.

    Copies every file of ``config_dir`` (``open_clip_config.json`` and, for a Hugging Face
    text tower, its ``config.json`` and tokenizer files) to ``dest`` and writes
    ``open_clip_pytorch_model.bin``. For tests and benchmarks: the same loading path as
    real weights, nothing downloaded.
    """
    import shutil

    import open_clip
    import torch

    src, out = Path(config_dir), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    cfg = json.loads((out / "open_clip_config.json").read_text(encoding="utf-8"))
    model_cfg = dict(cfg["model_cfg"])
    overrides = _local_text_override(out.resolve(), model_cfg)
    model_cfg.update(overrides)
    torch.manual_seed(seed)
    custom_text = bool(model_cfg.pop("custom_text", False))
    if "hf_model_name" in model_cfg.get("text_cfg", {}):
        custom_text = True
        model_cfg["text_cfg"] = {**model_cfg["text_cfg"], "hf_model_pretrained": False}
    if "timm_model_name" in model_cfg.get("vision_cfg", {}):
        model_cfg["vision_cfg"] = {**model_cfg["vision_cfg"], "timm_model_pretrained": False}
    model: Any = (open_clip.CustomTextCLIP if custom_text else open_clip.CLIP)(**model_cfg)
    torch.save(model.state_dict(), out / "open_clip_pytorch_model.bin")
    return out
