"""A model's identity: its reference as configured (a local folder by its name only)
plus a short hash of its weights. The index stores it and refuses vectors of another."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["LOCAL_DIR", "display_name", "weights_hash"]

#: the open_clip reference prefix of a model folder on this machine
LOCAL_DIR = "local-dir:"


def display_name(name: str) -> str:
    """The model reference as the identity shows it: a local folder by its last part."""
    if name.startswith(LOCAL_DIR):
        return LOCAL_DIR + Path(name[len(LOCAL_DIR) :]).resolve().name
    return name


def weights_hash(model: Any, length: int = 12) -> str:
    """A short BLAKE2b hash over the model's state dict (names and bytes, in order)."""
    h = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        t = tensor.detach().float().cpu().contiguous()
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:length]
