"""Which engine runs the image tower: on a CPU, the fastest faithful engine of
:mod:`indexer.engines` (OpenVINO int8, then bf16, then torch bf16, each behind the
fidelity check against torch fp32); on CUDA, torch with autocast as before. ``engine =
"torch"`` turns the CPU engine off (torch with the ``precision`` autocast, as before).

The text tower always stays on torch. Whatever engine runs, the embedder's identity (the
model's) is what the index records: an engine is used only after its vectors passed the
fidelity check, so vectors of one model are interchangeable whichever engine made them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.engines import (
    EnginePrecisionValues,
    EngineValues,
    ImageEncoder,
    Progress,
    candidates,
)

__all__ = [
    "EnginePrecisionValues",
    "EngineValues",
    "Progress",
    "check_engine_settings",
    "open_engine",
]

log = logging.getLogger(__name__)


def check_engine_settings(engine: str, precision: str) -> None:
    """``ValueError`` naming the setting when ``engine`` / ``precision`` is not allowed
    (or not allowed together, e.g. torch with int8)."""
    try:
        candidates(engine, precision)
    except ValueError as exc:
        raise ValueError(f"engine {engine!r} with engine precision {precision!r}: {exc}") from None


def open_engine(
    visual: Any,
    *,
    device: str,
    identity: str,
    image_size: int,
    preprocess: Callable[[Sequence[npt.NDArray[np.uint8]]], npt.NDArray[np.float32]],
    engine: str,
    precision: str,
    cache_dir: str | Path | None,
    on_progress: Progress | None = None,
) -> ImageEncoder | None:
    """The engine for the image tower, or None for the embedder's own torch path (CUDA,
    or ``engine = "torch"``)."""
    check_engine_settings(engine, precision)
    if device.startswith("cuda"):
        if engine == EngineValues.OPENVINO:
            log.info("engine openvino is for CPUs; on %s the image tower runs on torch with "
                     "autocast", device)
        return None
    if engine == EngineValues.TORCH:
        return None
    if cache_dir is None:
        raise ValueError(f"engine {engine!r} needs a cache folder (cache_dir, the node's "
                         "data_dir/engines) for its export")
    from indexer.engines import open_image_encoder

    return open_image_encoder(
        visual,
        identity=identity,
        image_size=image_size,
        preprocess=preprocess,
        cache_dir=cache_dir,
        engine=engine,
        precision=precision,
        on_progress=on_progress,
    )
