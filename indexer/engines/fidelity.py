"""The fidelity check an engine passes before a node uses it.

An engine (an export, a quantization) may only embed for a node when its vectors are
interchangeable with torch fp32's: the cosine between the engine's vector and torch
fp32's must be at least :data:`MIN_COSINE` for *every* picture of a fixed verification
set. Otherwise the engine is refused (:class:`~indexer.errors.EngineRefused`) and the
node says so and falls back.

The verification set is every picture that pydicom's own test files (installed with
pydicom, so present on every node) normalise to, without duplicates: CT, MR, RT dose,
ultrasound, secondary captures in RGB, YBR and palette colour, across transfer syntaxes.
The same pictures calibrate int8 quantization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.engines._encoder import ImageEncoder, unit_rows
from indexer.errors import EngineRefused

__all__ = [
    "MIN_COSINE",
    "FidelityReport",
    "Preprocess",
    "check_fidelity",
    "encode_all",
    "verification_pictures",
]

MIN_COSINE = 0.995

Preprocess = Callable[[Sequence[npt.NDArray[np.uint8]]], npt.NDArray[np.float32]]
"""The model's preprocessing: H×W×3 uint8 pictures -> ``(N, 3, H, W)`` float32."""


@dataclasses.dataclass(frozen=True)
class FidelityReport:
    """Cosines of an engine's vectors to torch fp32's over the verification set."""

    engine: str
    pictures: int
    min_cosine: float
    mean_cosine: float
    threshold: float = MIN_COSINE

    @property
    def passed(self) -> bool:
        return self.pictures > 0 and self.min_cosine >= self.threshold

    def __str__(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"{self.engine} {verdict} the fidelity check: min cosine {self.min_cosine:.5f} "
            f"(mean {self.mean_cosine:.5f}) to torch fp32 over {self.pictures} pictures, "
            f"threshold {self.threshold}"
        )


def verification_pictures() -> list[npt.NDArray[np.uint8]]:
    """Every distinct picture pydicom's own test files normalise to, in file-name order."""
    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    seen: set[bytes] = set()
    pictures: list[npt.NDArray[np.uint8]] = []
    pydicom_log = logging.getLogger("pydicom")
    level = pydicom_log.level
    pydicom_log.setLevel(logging.CRITICAL)  # the test files are odd on purpose: say nothing
    try:
        results = [_picture(path) for path in sorted(folder.rglob("*.dcm")) if path.is_file()]
    finally:
        pydicom_log.setLevel(level)
    for result in results:
        if result is None:
            continue
        digest = hashlib.blake2b(result.tobytes(), digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            pictures.append(result)
    return pictures


def _picture(path: Path) -> npt.NDArray[np.uint8] | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from indexer.normalise import NormalisedImage, normalise_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = normalise_dataset(pydicom.dcmread(path, force=True))
        except (InvalidDicomError, OSError, ValueError, TypeError, KeyError, EOFError):
            return None  # not a data set pydicom reads: not a picture either
    return result.pixels if isinstance(result, NormalisedImage) else None


def encode_all(
    encode: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    batch: npt.NDArray[np.float32],
    *,
    batch_size: int = 8,
) -> npt.NDArray[np.float32]:
    """``encode`` over ``batch`` in slices of ``batch_size``; unit rows."""
    parts = [encode(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)]
    return unit_rows(np.concatenate(parts))


def check_fidelity(
    encoder: ImageEncoder,
    batch: npt.NDArray[np.float32],
    reference: npt.NDArray[np.float32],
    *,
    threshold: float = MIN_COSINE,
) -> FidelityReport:
    """Compare ``encoder`` on ``batch`` with torch fp32's ``reference`` vectors.

    Returns the report when every cosine is at least ``threshold``; raises
    :class:`EngineRefused` (with the report in its message) otherwise."""
    if len(batch) == 0 or len(batch) != len(reference):
        raise ValueError(
            f"need as many reference vectors as pictures, got {len(reference)} for {len(batch)}"
        )
    vectors = encode_all(encoder.encode, batch)
    cosines = np.sum(vectors * unit_rows(reference), axis=1)
    report = FidelityReport(
        engine=encoder.engine,
        pictures=len(batch),
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
        threshold=threshold,
    )
    if not report.passed:
        raise EngineRefused(str(report))
    return report
