"""Test models: a ``local-dir:`` open_clip folder with random weights, written from a
config folder the tests ship (tests/assets/models). The same loading path as real
weights; nothing is downloaded. Used by the tests and the benchmarks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from indexer.embedder.loading import local_text_override

__all__ = ["write_random_model_dir"]


def write_random_model_dir(
    config_dir: str | os.PathLike[str], dest: str | os.PathLike[str], *, seed: int = 0
) -> Path:
    """Make a ``local-dir:`` model folder with random weights from a shipped config folder.

    Copies every file of ``config_dir`` (``open_clip_config.json`` and, for a Hugging Face
    text tower, its ``config.json`` and tokenizer files) to ``dest`` and writes
    ``open_clip_pytorch_model.bin``.
    """
    import open_clip
    import torch

    src, out = Path(config_dir), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    cfg = json.loads((out / "open_clip_config.json").read_text(encoding="utf-8"))
    model_cfg = dict(cfg["model_cfg"])
    model_cfg.update(local_text_override(out.resolve(), model_cfg))
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
