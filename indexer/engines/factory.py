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
a candidate that fails is refused with one log line saying why and what runs instead, its
refusal is remembered in the cache (so a node does not export it again at every start),
and the next candidate is tried. An export that fails outright (an operation the converter
does not know, NNCF, no room) is refused the same way but not remembered. torch needs no
check: it is the reference (bf16 autocast is within 0.9999). What the libraries print
while exporting goes to the log at DEBUG (:mod:`indexer.engines._quiet`); ``on_progress``
is told what takes time, for the node's status.

The index records the model's identity, never the engine's: every engine that passed the
check gives vectors interchangeable with torch's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.engines import openvino as ov_engine
from indexer.engines._encoder import EnginePrecisionValues, EngineValues, ImageEncoder
from indexer.engines._quiet import quiet
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

__all__ = ["Progress", "candidates", "open_image_encoder"]

log = logging.getLogger(__name__)

_FORMAT = 1  # bump when what is written to the cache changes meaning
_REFERENCE = "reference.npy"
_META = "engine.json"
_REFUSED = "refused.json"

Progress = Callable[[str], None]
"""Told, in a few words, what takes time now (for the node's status)."""


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
    pictures: Sequence[npt.NDArray[np.uint8]] | None = None,
    on_progress: Progress | None = None,
) -> ImageEncoder:
    """The first candidate engine for ``visual`` that is installed and faithful.

    ``pictures`` overrides the verification pictures (H×W×3 uint8; by default
    :func:`~indexer.engines.fidelity.verification_pictures`), ``calibration`` the int8
    calibration pictures (preprocessed; by default the verification pictures).
    ``on_progress`` is told, in a few words, what takes time (an export, a check).
    Refusals are logged (WARNING, one line each, naming what runs instead); torch, the
    last candidate, is always available.
    """
    order = candidates(engine, precision)
    cache = Path(cache_dir)
    verification: npt.NDArray[np.float32] | None = None
    key_base: str | None = None
    for i, (name, prec) in enumerate(order):
        if name == EngineValues.TORCH:
            return TorchImageEncoder(visual, identity=identity, precision=prec)
        instead = _instead(order[i + 1])
        if not ov_engine.is_available():
            log.warning("engine openvino %s refused: openvino is not installed; %s", prec,
                        instead)
            continue
        if verification is None:
            chosen = verification_pictures() if pictures is None else list(pictures)
            verification = np.asarray(preprocess(chosen), dtype=np.float32)
            key_base = _weights_hash(visual) + _array_hash(verification)
        assert key_base is not None
        calib = verification if calibration is None else calibration
        try:
            key = _key(key_base, prec, image_size, threshold, calib)
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
                on_progress=on_progress or _say_nothing,
            )
        except EngineRefused as exc:
            log.warning("engine openvino %s refused: %s; %s", prec, exc, instead)
    raise AssertionError("torch is always the last candidate")  # pragma: no cover


def _instead(following: tuple[str, str]) -> str:
    name, prec = following
    if name == EngineValues.TORCH:
        return f"torch {prec} runs the image tower instead"
    return f"trying {name} {prec} instead"


def _say_nothing(_: str) -> None:
    pass


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
    on_progress: Progress,
) -> ImageEncoder:
    refused = folder / _REFUSED
    if refused.is_file():
        raise EngineRefused(
            json.loads(refused.read_text(encoding="utf-8"))["reason"]
            + f" (remembered in {folder}; delete that folder to try again)"
        )
    if (folder / _META).is_file():
        on_progress(f"checking the cached OpenVINO {precision} image tower against torch fp32")
        try:
            model = ov_engine.load(folder)
            reference = np.load(folder / _REFERENCE)
            encoder = ov_engine.OpenVINOImageEncoder(
                model, identity=identity, precision=precision, threads=threads
            )
        except Exception as exc:  # OpenVINO's reader raises bare RuntimeErrors: wrapped
            why = " ".join(str(exc).split())[:300]
            raise EngineRefused(f"the cached export in {folder} cannot be read ({why})") from exc
        report = check_fidelity(encoder, verification, reference, threshold=threshold)
        log.info("engine %s from %s: %s", encoder.engine, folder, report)
        return encoder

    on_progress(f"exporting the image tower to OpenVINO {precision} (first start with this "
                "model; minutes on a CPU for BiomedCLIP)")
    log.info("exporting the image tower to openvino %s (once; cached in %s)", precision, folder)
    try:
        with quiet(f"openvino {precision} export"):
            reference = encode_all(
                TorchImageEncoder(visual, identity=identity, precision="fp32").encode,
                verification,
            )
            model = ov_engine.convert(visual, image_size)
            if precision == EnginePrecisionValues.INT8:
                model = ov_engine.quantize_int8(model, calibration)
            encoder = ov_engine.OpenVINOImageEncoder(
                model, identity=identity, precision=precision, threads=threads
            )
    except Exception as exc:  # tracing, conversion and NNCF raise anything: wrapped
        # not remembered: a node tries again at its next start (the cause may pass)
        why = " ".join(str(exc).split())[:300]  # one log line
        raise EngineRefused(f"the export failed ({type(exc).__name__}: {why})") from exc
    try:
        report = check_fidelity(encoder, verification, reference, threshold=threshold)
    except EngineRefused as exc:
        _write_atomically(folder, {_REFUSED: {"reason": str(exc)}})
        raise
    try:
        _save(folder, model, reference, _meta(identity, precision, report))
    except OSError as exc:  # the engine is good; only the next start will export again
        log.warning("engine %s: could not keep the export in %s (%s); the next start "
                    "exports again", encoder.engine, folder, exc)
    log.info("engine %s: %s", encoder.engine, report)
    return encoder


def _save(folder: Path, model: Any, reference: npt.NDArray[np.float32],
          meta: dict[str, Any]) -> None:
    """Write the export beside its reference vectors, all at once (a folder renamed into
    place); a folder another process wrote first is kept."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        ov_engine.save(model, tmp)
        np.save(tmp / _REFERENCE, reference)
        _write_json(tmp / _META, meta)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / _META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    tmp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
        for name, data in files.items():
            _write_json(tmp / name, data)
        tmp.rename(folder)
    except OSError:  # another process wrote it first, or no room: the refusal stands
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _key(
    base: str, precision: str, image_size: int, threshold: float, calibration: npt.NDArray[Any]
) -> str:
    h = hashlib.blake2b(digest_size=8)
    parts = [base, precision, str(image_size), repr(threshold), str(_FORMAT)]
    try:
        versions = ov_engine.versions(precision)
    except ImportError as exc:  # NNCF, for int8
        raise EngineRefused(f"{exc.name or exc} cannot be imported ({exc})") from exc
    parts += [f"{k}={v}" for k, v in sorted(versions.items())]
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
