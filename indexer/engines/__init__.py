"""Inference engines for the model's image tower on a CPU.

Today's embedder runs the image tower on torch (bf16 autocast on CPUs that have it). On a
node without CUDA, :func:`open_image_encoder` puts the tower on a faster engine instead,
OpenVINO int8 (or bf16), after its vectors passed a fidelity check against torch fp32
(minimum cosine :data:`MIN_COSINE` on every verification picture), and falls back to
torch when no engine passes. The text tower stays on torch.

Modules, one concept each: ``_encoder`` (the :class:`ImageEncoder` protocol and the
allowed values), ``torch_eager`` (the reference and fallback), ``openvino`` (export,
quantization, inference), ``fidelity`` (the check and its pictures), ``factory``
(choosing, caching and verifying).
"""

from __future__ import annotations

from indexer.engines._encoder import (
    EnginePrecisionValues,
    EngineValues,
    ImageEncoder,
    unit_rows,
)
from indexer.engines.factory import candidates, open_image_encoder
from indexer.engines.fidelity import (
    MIN_COSINE,
    FidelityReport,
    check_fidelity,
    verification_pictures,
)
from indexer.engines.torch_eager import TorchImageEncoder

__all__ = [
    "MIN_COSINE",
    "EnginePrecisionValues",
    "EngineValues",
    "FidelityReport",
    "ImageEncoder",
    "TorchImageEncoder",
    "candidates",
    "check_fidelity",
    "open_image_encoder",
    "unit_rows",
    "verification_pictures",
]
