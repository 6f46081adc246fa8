"""Loading a model: from an open_clip reference to an :class:`Embedder`, or
:class:`ModelUnavailable` saying why and how to provide the weights.

A ``local-dir:`` folder is checked before open_clip is asked (config, weights, and for a
Hugging Face text tower its ``config.json``), and such a text tower is built from the
folder, so nothing is fetched.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer._enums import to_member
from indexer.embedder._model import Embedder
from indexer.embedder.identity import LOCAL_DIR, display_name, weights_hash
from indexer.embedder.image_engine import (
    EnginePrecisionValues,
    EngineValues,
    Progress,
    check_engine_settings,
    open_engine,
)
from indexer.embedder.precision import PrecisionValues, resolve_autocast, resolve_device
from indexer.embedder.preprocessing import image_size, standard_normalisation, to_tensor
from indexer.errors import ModelUnavailable

__all__ = ["DEFAULT_MODEL", "load_embedder", "local_text_override"]

log = logging.getLogger(__name__)

#: BiomedCLIP on the Hugging Face hub (see the README for the offline set-up)
DEFAULT_MODEL = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
_CHECKPOINT_GLOBS = ("*.safetensors", "*.bin", "*.pth", "*.pt")
_HOW_TO = (
    "To run offline, put the model in a folder: open_clip_config.json and "
    "open_clip_pytorch_model.bin from the Hugging Face repository "
    "(for BiomedCLIP also the text model's config.json, vocab.txt and tokenizer_config.json "
    "from microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract), then set [model] path "
    "(PRECEDENT_MODEL__PATH) to that folder, or name it as 'local-dir:/that/folder'. "
    "The node keeps receiving meanwhile; the queue waits."
)


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


def local_text_override(folder: Path, model_cfg: dict[str, Any]) -> dict[str, Any]:
    """For a Hugging Face text tower, the open_clip override that builds it from the
    folder's ``config.json`` (offline); empty for other text towers."""
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
    precision: PrecisionValues | str = PrecisionValues.AUTO,
    batch_size: int = 32,
    engine: str = EngineValues.TORCH,
    engine_precision: str = EnginePrecisionValues.AUTO,
    cache_dir: str | os.PathLike[str] | None = None,
    on_progress: Progress | None = None,
) -> Embedder:
    """Build an :class:`Embedder` from an open_clip model reference.

    ``path``, when given, is a local model folder and wins over ``name``. Raises
    :class:`ModelUnavailable` (saying why and how to provide the weights) when the model
    cannot be loaded: no hub, no folder, no weights, no tokenizer files.

    ``precision`` is torch's autocast (on CUDA, and on a CPU with ``engine="torch"``).
    ``engine`` (``auto`` | ``openvino`` | ``torch``, default torch) and
    ``engine_precision`` (``auto`` | ``int8`` | ``bf16`` | ``fp32``) choose the image
    tower's engine on a CPU (:mod:`~indexer.embedder.image_engine`); an engine other than
    torch needs ``cache_dir`` for its export (the node's ``data_dir/engines``), and tells
    ``on_progress`` what takes time (the first export of a model takes minutes).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    wanted = to_member(PrecisionValues, precision, name="precision")
    check_engine_settings(engine, engine_precision)
    if path is not None:
        p = Path(path)
        if p.is_file():
            if name.startswith(("hf-hub:", LOCAL_DIR)):
                raise ModelUnavailable(
                    f"model path {p} is a weights file; give the architecture as a built-in "
                    f"name (e.g. ViT-B-16) or make a folder. {_HOW_TO}"
                )
            pretrained = str(p)
        else:
            name = LOCAL_DIR + str(p)

    overrides: dict[str, Any] = {}
    if name.startswith(LOCAL_DIR):
        folder = Path(name[len(LOCAL_DIR) :]).expanduser().resolve()
        name = LOCAL_DIR + str(folder)
        overrides = local_text_override(folder, _local_dir_checks(folder))

    try:
        import open_clip
        import torch
    except ImportError as exc:
        raise ModelUnavailable(f"torch/open_clip cannot be imported ({exc})") from exc

    dev = resolve_device(device)
    autocast = resolve_autocast(wanted, dev)
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
    identity = f"{display_name(name)}@{weights_hash(model)}"
    size = image_size(model)
    normalisation = standard_normalisation(preprocess, size)

    def preprocessed(pictures: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        tensor = to_tensor(pictures, preprocess=preprocess, size=size,
                           normalisation=normalisation)
        return np.asarray(tensor.numpy(), dtype=np.float32)

    encoder = open_engine(
        model.visual, device=dev, identity=identity, image_size=size,
        preprocess=preprocessed, engine=engine, precision=engine_precision,
        cache_dir=None if cache_dir is None else Path(cache_dir), on_progress=on_progress,
    )
    embedder = Embedder(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        name=name,
        device=dev,
        autocast_dtype=autocast,
        batch_size=batch_size,
        identity=identity,
        image_encoder=encoder,
    )
    log.info("model loaded: %r", embedder)
    return embedder
