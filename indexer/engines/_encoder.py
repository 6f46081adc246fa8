"""What every image-tower engine offers the embedder: :class:`ImageEncoder`, the engines
and precisions that exist, and the unit-row helper they share."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["EnginePrecisionValues", "EngineValues", "ImageEncoder", "unit_rows"]


class EngineValues:
    """Allowed ``engine`` settings (plain strings)."""

    AUTO = "auto"  # OpenVINO when it is installed and faithful, else torch
    TORCH = "torch"
    OPENVINO = "openvino"
    ALL = (AUTO, TORCH, OPENVINO)


class EnginePrecisionValues:
    """Allowed engine precisions (plain strings)."""

    AUTO = "auto"  # int8, then bf16, then torch: the first that passes the fidelity check
    INT8 = "int8"  # post-training static int8 (NNCF, calibrated), bf16 elsewhere
    BF16 = "bf16"
    FP32 = "fp32"
    ALL = (AUTO, INT8, BF16, FP32)


@runtime_checkable
class ImageEncoder(Protocol):
    """The image tower behind one call: preprocessed pixels in, unit vectors out.

    ``identity`` is the *model's* identity (what the index records); every engine of one
    model gives the same identity, because an engine is only used after its vectors passed
    the fidelity check against torch fp32. ``engine`` names what runs (for status and logs).
    """

    identity: str
    engine: str

    def encode(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``(N, 3, H, W)`` float32, preprocessed as the model expects -> ``(N, D)`` unit rows."""
        ...


def unit_rows(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
