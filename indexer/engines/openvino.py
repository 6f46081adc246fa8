"""The image tower on OpenVINO: export from torch, int8 quantization, and inference.

Chosen by measurement on a 2-core Xeon without GPU (``bench/cpu_engine.py``,
``docs/cpu_engine.md``): OpenVINO's CPU plugin runs int8 and bf16 matrix products on the
CPU's AMX/VNNI units, and its thread pool degrades far less than torch's OpenMP team when
other work (decoding, the network) shares the cores.

- **Export**: ``openvino.convert_model`` traces the torch tower (batch dimension left
  dynamic), weights kept in fp32.
- **int8**: NNCF post-training static quantization, calibrated on the verification
  pictures: per-channel symmetric int8 weights, per-tensor symmetric int8 activations,
  SmoothQuant (alpha 0.5) to move activation outliers into the weights. The patch
  embedding, the attention's query-key-value products and the final projection stay in
  bf16: those are where int8 cost the most cosine for the least time.
- **Inference**: as many streams as threads (``PERFORMANCE_HINT=THROUGHPUT``), a batch
  split across them, threads not pinned to cores (the node runs other threads too).
  Everything that is not int8 runs in bf16 on CPUs that have it (OpenVINO's default).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.engines._encoder import EnginePrecisionValues

__all__ = [
    "OpenVINOImageEncoder",
    "convert",
    "is_available",
    "load",
    "quantize_int8",
    "save",
    "versions",
]

log = logging.getLogger(__name__)

MODEL_FILE = "image_tower.xml"
SMOOTH_QUANT_ALPHA = 0.5


def is_available() -> bool:
    """True when OpenVINO can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def versions(precision: str) -> dict[str, str]:
    """The library versions an artefact of ``precision`` depends on (part of its cache key)."""
    import openvino

    out = {"openvino": str(openvino.__version__)}
    if precision == EnginePrecisionValues.INT8:
        import nncf

        out["nncf"] = str(nncf.__version__)
    return out


def convert(visual: Any, image_size: int) -> Any:
    """The torch image tower as an OpenVINO model with a dynamic batch dimension."""
    import openvino as ov
    import torch

    example = torch.zeros((2, 3, image_size, image_size), dtype=torch.float32)
    with torch.inference_mode():
        model = ov.convert_model(visual.eval(), example_input=example)
    model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, image_size, image_size])})
    return model


def _bf16_scope(model: Any) -> Any:
    """What int8 leaves alone: the patch embedding (the only convolution), the attention's
    own products, and the last matrix product (the projection to the embedding)."""
    import nncf

    matmuls = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    names = [matmuls[-1].get_friendly_name()] if matmuls else []
    return nncf.IgnoredScope(
        names=names, types=["Convolution", "ScaledDotProductAttention"], validate=False
    )


def quantize_int8(model: Any, calibration: npt.NDArray[np.float32], *, batch_size: int = 8) -> Any:
    """NNCF post-training int8 quantization of ``model`` calibrated on ``calibration``
    (preprocessed pictures)."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    if len(calibration) == 0:
        raise ValueError("int8 quantization needs at least one calibration picture")
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)  # NNCF's progress bars and per-layer notes
    try:
        batches = [calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)]
        return nncf.quantize(
            model,
            nncf.Dataset(batches),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(batches),
            ignored_scope=_bf16_scope(model),
            advanced_parameters=AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA)
            ),
        )
    finally:
        nncf_log.setLevel(level)


def save(model: Any, folder: Path) -> Path:
    """Write ``model`` (weights uncompressed) into ``folder``; returns the .xml path."""
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def load(folder: Path) -> Any:
    """Read a model written by :func:`save`."""
    import openvino as ov

    return ov.Core().read_model(str(folder / MODEL_FILE))


class OpenVINOImageEncoder:
    """An OpenVINO model of the image tower, compiled for the CPU.

    ``threads`` is the number of inference threads and streams (default: the CPUs this
    process may run on). ``precision`` is what the model holds (``int8``, ``bf16`` or
    ``fp32``); for ``fp32`` inference is asked to stay in f32, otherwise OpenVINO's
    default (bf16 where the CPU has it) applies to what is not int8.
    """

    def __init__(
        self, model: Any, *, identity: str, precision: str, threads: int | None = None
    ) -> None:
        import os

        import openvino as ov

        if precision not in (
            EnginePrecisionValues.INT8,
            EnginePrecisionValues.BF16,
            EnginePrecisionValues.FP32,
        ):
            raise ValueError(f"precision must be int8, bf16 or fp32, got {precision!r}")
        n = threads if threads is not None else len(os.sched_getaffinity(0))
        if n < 1:
            raise ValueError(f"threads must be at least 1, got {n}")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": n,
            "INFERENCE_NUM_THREADS": n,
            "ENABLE_CPU_PINNING": False,
        }
        if precision == EnginePrecisionValues.FP32:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        elif precision == EnginePrecisionValues.BF16:
            config["INFERENCE_PRECISION_HINT"] = "bf16"
        self._compiled = ov.Core().compile_model(model, "CPU", config)
        self._streams = n
        self._queue = ov.AsyncInferQueue(self._compiled, n)
        self._lock = threading.Lock()
        self.identity = identity
        self.precision = precision
        self.threads = n
        self.engine = f"openvino {precision}"

    def __repr__(self) -> str:
        return (
            f"OpenVINOImageEncoder(identity={self.identity!r}, precision={self.precision!r}, "
            f"threads={self.threads})"
        )

    def encode(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        from indexer.engines._encoder import unit_rows

        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"batch must be N×3×H×W float32, got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, 0), np.float32)
        bounds = _split(len(x), self._streams)
        parts: list[Any] = [None] * len(bounds)

        def done(request: Any, index: int) -> None:
            parts[index] = request.get_output_tensor(0).data.copy()

        with self._lock:
            self._queue.set_callback(done)
            for i, (start, stop) in enumerate(bounds):
                self._queue.start_async({0: x[start:stop]}, i)
            self._queue.wait_all()
        return unit_rows(np.concatenate(parts))


def _split(n: int, parts: int) -> Sequence[tuple[int, int]]:
    """``n`` items in at most ``parts`` contiguous slices of near-equal size."""
    k = max(1, min(parts, n))
    edges = [round(i * n / k) for i in range(k + 1)]
    return [(edges[i], edges[i + 1]) for i in range(k)]
