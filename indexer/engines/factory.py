"""Choose, build, cache and verify the image tower's engine: :func:`open_image_encoder`.

The embedder calls it once per model load with the torch image tower::

    encoder = open_image_encoder(
        model.visual, identity=embedder.identity, image_size=embedder.image_size,
        preprocess=lambda pictures: embedder.to_tensor(pictures).numpy(),
        cache_dir=data_dir / "engines", engine="auto", precision="auto",
    )
    vectors = encoder.encode(embedder.to_tensor(pictures).numpy())

The candidates are tried in order (``auto``: OpenVINO int8, OpenVINO bf16, then torch
bf16). An OpenVINO candidate is exported once and kept in ``cache_dir`` under a key of
the tower's weights, the engine, its precision, the library versions and the verification
pictures, beside torch fp32's vectors of those pictures. Every time it is opened, from
the cache or fresh, its vectors are checked against those (:mod:`indexer.engines.fidelity`);
a candidate that fails is refused with one log line saying why, its refusal is remembered
in the cache (so a node does not export it again at every start), and the next candidate
is tried. torch needs no check: it is the reference (bf16 autocast is within 0.9999).

The index records the model's identity, never the engine's: every engine that passed the
check gives vectors interchangeable with torch's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.engines import openvino as ov_engine
from indexer.engines._encoder import EnginePrecisionValues, EngineValues, ImageEncoder
from indexer.engines.fidelity import (
    MIN_COSINE,
    FidelityReport,
    Preprocess,
    check_fidelity,
    encode_all,
    verification_pictures,
)
from indexer.engines.torch_eager import TorchImageEncoder
from indexer.errors import EngineRefused

__all__ = ["candidates", "open_image_encoder"]

log = logging.getLogger(__name__)

_FORMAT = 1  # bump when what is written to the cache changes meaning
_REFERENCE = "reference.npy"
_META = "engine.json"
_REFUSED = "refused.json"


def candidates(engine: str, precision: str) -> list[tuple[str, str]]:
    """The (engine, precision) pairs to try, in order, for the settings given."""
    if engine not in EngineValues.ALL:
        raise ValueError(f"engine must be one of {EngineValues.ALL}, got {engine!r}")
    if precision not in EnginePrecisionValues.ALL:
        raise ValueError(f"precision must be one of {EnginePrecisionValues.ALL}, got {precision!r}")
    torch_precision = (
        EnginePrecisionValues.FP32
        if precision == EnginePrecisionValues.FP32
        else EnginePrecisionValues.BF16
    )
    torch_last = [(EngineValues.TORCH, torch_precision)]
    if engine == EngineValues.TORCH:
        if precision == EnginePrecisionValues.INT8:
            raise ValueError("int8 needs the openvino engine; torch runs fp32 or bf16")
        return torch_last
    auto = [EnginePrecisionValues.INT8, EnginePrecisionValues.BF16]
    chosen = auto if precision == EnginePrecisionValues.AUTO else [precision]
    return [(EngineValues.OPENVINO, p) for p in chosen] + torch_last


def open_image_encoder(
    visual: Any,
    *,
    identity: str,
    image_size: int,
    preprocess: Preprocess,
    cache_dir: str | Path,
    engine: str = EngineValues.AUTO,
    precision: str = EnginePrecisionValues.AUTO,
    threads: int | None = None,
    calibration: npt.NDArray[np.float32] | None = None,
    threshold: float = MIN_COSINE,
) -> ImageEncoder:
    """The first candidate engine for ``visual`` that is installed and faithful.

    ``calibration`` overrides the int8 calibration pictures (preprocessed); by default
    they are the verification pictures. Refusals are logged (WARNING, one line each);
    torch, the last candidate, is always available.
    """
    order = candidates(engine, precision)
    cache = Path(cache_dir)
    verification: npt.NDArray[np.float32] | None = None
    key_base: str | None = None
    for name, prec in order:
        if name == EngineValues.TORCH:
            return TorchImageEncoder(visual, identity=identity, precision=prec)
        if not ov_engine.is_available():
            log.warning("engine openvino %s refused: openvino is not installed; next engine", prec)
            continue
        if verification is None:
            verification = np.asarray(preprocess(verification_pictures()), dtype=np.float32)
            key_base = _weights_hash(visual) + _array_hash(verification)
        assert key_base is not None
        calib = verification if calibration is None else calibration
        key = _key(key_base, prec, image_size, threshold, calib)
        try:
            return _open_openvino(
                visual,
                folder=cache / f"openvino-{prec}-{key}",
                identity=identity,
                image_size=image_size,
                precision=prec,
                threads=threads,
                verification=verification,
                calibration=calib,
                threshold=threshold,
            )
        except EngineRefused as exc:
            log.warning("engine openvino %s refused: %s; next engine", prec, exc)
    raise AssertionError("torch is always the last candidate")  # pragma: no cover


def _open_openvino(
    visual: Any,
    *,
    folder: Path,
    identity: str,
    image_size: int,
    precision: str,
    threads: int | None,
    verification: npt.NDArray[np.float32],
    calibration: npt.NDArray[np.float32],
    threshold: float,
) -> ImageEncoder:
    refused = folder / _REFUSED
    if refused.is_file():
        raise EngineRefused(
            json.loads(refused.read_text(encoding="utf-8"))["reason"]
            + f" (remembered in {folder}; delete that folder to try again)"
        )
    if (folder / _META).is_file():
        model = ov_engine.load(folder)
        reference = np.load(folder / _REFERENCE)
        encoder = ov_engine.OpenVINOImageEncoder(
            model, identity=identity, precision=precision, threads=threads
        )
        report = check_fidelity(encoder, verification, reference, threshold=threshold)
        log.info("engine %s from %s: %s", encoder.engine, folder, report)
        return encoder

    log.info("exporting the image tower to openvino %s (once; cached in %s)", precision, folder)
    reference = encode_all(
        TorchImageEncoder(visual, identity=identity, precision="fp32").encode, verification
    )
    model = ov_engine.convert(visual, image_size)
    if precision == EnginePrecisionValues.INT8:
        model = ov_engine.quantize_int8(model, calibration)
    encoder = ov_engine.OpenVINOImageEncoder(
        model, identity=identity, precision=precision, threads=threads
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = check_fidelity(encoder, verification, reference, threshold=threshold)
    except EngineRefused as exc:
        _write_atomically(folder, {_REFUSED: {"reason": str(exc)}})
        raise
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        ov_engine.save(model, tmp)
        np.save(tmp / _REFERENCE, reference)
        _write_json(tmp / _META, _meta(identity, precision, report))
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("engine %s: %s", encoder.engine, report)
    return encoder


def _meta(identity: str, precision: str, report: FidelityReport) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "identity": identity,
        "engine": EngineValues.OPENVINO,
        "precision": precision,
        "versions": ov_engine.versions(precision),
        "fidelity": {
            "pictures": report.pictures,
            "min_cosine": report.min_cosine,
            "mean_cosine": report.mean_cosine,
            "threshold": report.threshold,
        },
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_atomically(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        for name, data in files.items():
            _write_json(tmp / name, data)
        tmp.rename(folder)
    except OSError:  # another process wrote it first: theirs is as good
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _key(
    base: str, precision: str, image_size: int, threshold: float, calibration: npt.NDArray[Any]
) -> str:
    h = hashlib.blake2b(digest_size=8)
    parts = [base, precision, str(image_size), repr(threshold), str(_FORMAT)]
    parts += [f"{k}={v}" for k, v in sorted(ov_engine.versions(precision).items())]
    if precision == EnginePrecisionValues.INT8:
        parts.append(_array_hash(calibration))
    h.update("|".join(parts).encode())
    return h.hexdigest()


def _array_hash(a: npt.NDArray[Any]) -> str:
    arr = np.ascontiguousarray(a)
    return hashlib.blake2b(arr.tobytes(), digest_size=8).hexdigest() + str(arr.shape)


def _weights_hash(module: Any) -> str:
    """BLAKE2b over the tower's state dict (names and bytes, in order)."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
