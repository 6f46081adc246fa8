"""Where and in what precision the model runs: the device (``auto`` picks CUDA when
present) and the autocast precision (``auto``: bf16 where the GPU or CPU has it, fp16 on
other GPUs, fp32 on other CPUs)."""

from __future__ import annotations

import enum
from pathlib import Path

from indexer._enums import to_member
from indexer.errors import ModelUnavailable

__all__ = ["PrecisionValues", "resolve_autocast", "resolve_device"]


class PrecisionValues(str, enum.Enum):
    """Allowed ``precision`` settings."""

    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


#: the precisions the model may autocast to (fp32 means no autocast)
AUTOCAST = (PrecisionValues.FP16, PrecisionValues.BF16)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when CUDA is available, else ``cpu``; a CUDA device asked for
    where there is none raises :class:`ModelUnavailable`."""
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


def resolve_autocast(precision: PrecisionValues | str, device: str) -> PrecisionValues | None:
    """The autocast precision for ``precision`` on ``device``; None means fp32."""
    wanted = to_member(PrecisionValues, precision, name="precision")
    if wanted is PrecisionValues.FP32:
        return None
    if wanted is not PrecisionValues.AUTO:
        return wanted
    if device.startswith("cuda"):
        import torch

        return PrecisionValues.BF16 if torch.cuda.is_bf16_supported() else PrecisionValues.FP16
    return PrecisionValues.BF16 if _cpu_has_bf16() else None
