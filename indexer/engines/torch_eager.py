"""The image tower on torch itself (eager mode): the reference every other engine is
checked against (fp32), and the fallback when no other engine is installed or faithful
(bf16 autocast on CPUs that have bf16, as the embedder did before engines)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.engines._encoder import EnginePrecisionValues, unit_rows

__all__ = ["TorchImageEncoder"]


class TorchImageEncoder:
    """``visual`` (an open_clip image tower) run by torch on the CPU.

    ``precision`` is ``fp32`` (the reference) or ``bf16`` (autocast)."""

    def __init__(self, visual: Any, *, identity: str, precision: str) -> None:
        if precision not in (EnginePrecisionValues.FP32, EnginePrecisionValues.BF16):
            raise ValueError(f"precision must be 'fp32' or 'bf16' for torch, got {precision!r}")
        self._visual = visual
        self.identity = identity
        self.precision = precision
        self.engine = f"torch {precision}"

    def __repr__(self) -> str:
        return f"TorchImageEncoder(identity={self.identity!r}, precision={self.precision!r})"

    def encode(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        enabled = self.precision == EnginePrecisionValues.BF16
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            feats = self._visual(x)
        return unit_rows(feats.float().numpy())
