"""DICOM pixels to a model-ready picture: a pure function, no model inside.

``normalise_dataset(ds)`` returns a :class:`NormalisedImage` (H×W×3 ``uint8`` RGB) or a
:class:`SkipReason`. It never raises for a data set it cannot use; it says why.

The steps, in the order of the DICOM grayscale pipeline (PS3.4 N.2):

1. **Frame.** Multi-frame objects give their middle frame (``number_of_frames // 2``):
   for a cine loop, a volume stored as one object or a tomosynthesis stack it is the most
   representative single picture, and only that frame is decoded.
2. **Decode** with pydicom's pixel plugins (any transfer syntax they handle), plus GDCM
   for 12-bit JPEG Extended streams libjpeg refuses (:mod:`indexer.jpeg_extended`). YBR_FULL,
   YBR_FULL_422 (and the other YBR forms) become RGB in the decoder; PALETTE COLOR goes
   through its lookup table.
3. **Modality LUT** (rescale slope/intercept, or a Modality LUT Sequence).
4. **VOI** (:mod:`indexer.voi`): the VOI LUT Sequence when present (its first LUT),
   otherwise the first window centre/width (with its VOI LUT Function: LINEAR,
   LINEAR_EXACT or SIGMOID). *Fallback* when neither is present: a window over the 0.5th
   to 99.5th percentile of the frame's values (robust against a few hot or dead pixels);
   a constant frame maps to 0.
5. **MONOCHROME1** is inverted so that higher always means brighter.
6. Grey is repeated into three channels; colour with more than 8 bits is scaled to 8.

Float pixel data (Float/Double Float Pixel Data) takes the same VOI steps.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import UID

from indexer import jpeg_extended
from indexer.voi import VoiSourceValues, apply_window, first_window, voi_to_unit

__all__ = [
    "NormalisedImage",
    "SkipReason",
    "SkipReasonValues",
    "VoiSourceValues",
    "apply_window",
    "choose_frame",
    "first_window",
    "normalise_dataset",
]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class SkipReasonValues(str, enum.Enum):
    """Why a data set gives no picture."""

    NO_PIXEL_DATA = "no_pixel_data"  # SR, KOS, PDF, waveforms, RT plans, presentation states
    UNDECODABLE = "undecodable"  # pixel data present but no plugin could decode it
    UNSUPPORTED = "unsupported"  # decoded, but a shape or photometric interpretation we don't map


@dataclasses.dataclass(frozen=True)
class SkipReason:
    """A data set that gives no picture, and why (``str()`` is what the queue records)."""

    code: SkipReasonValues
    detail: str

    def __str__(self) -> str:
        return f"{self.code.value}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class NormalisedImage:
    """A model-ready picture: ``pixels`` is H×W×3 ``uint8`` RGB, C-contiguous."""

    pixels: npt.NDArray[np.uint8]
    frame_index: int
    number_of_frames: int
    photometric_interpretation: str
    voi_source: VoiSourceValues
    window: tuple[float, float] | None  # (centre, width) actually applied, when one was

    def __post_init__(self) -> None:
        p = self.pixels
        if p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3:
            raise ValueError(f"pixels must be H×W×3 uint8, got {p.dtype} {p.shape}")


def choose_frame(number_of_frames: int) -> int:
    """The frame a multi-frame object is represented by: the middle one."""
    if number_of_frames < 1:
        raise ValueError(f"number_of_frames must be at least 1, got {number_of_frames}")
    return number_of_frames // 2


def normalise_dataset(ds: Dataset) -> NormalisedImage | SkipReason:
    """Turn a data set into a :class:`NormalisedImage`, or say why it has none."""
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        return SkipReason(
            SkipReasonValues.NO_PIXEL_DATA, f"{_sop_class_name(ds)} has no pixel data"
        )
    try:
        n_frames = max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        n_frames = 1
    index = choose_frame(n_frames)
    try:
        arr = _decode_frame(_with_transfer_syntax(ds), index, n_frames)
    except Exception as exc:  # noqa: BLE001 - any plugin failure is a reason, not a crash
        return SkipReason(SkipReasonValues.UNDECODABLE, f"{type(exc).__name__}: {exc}"[:500])
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    try:
        if (arr.ndim == 3 and arr.shape[-1] in (3, 4)) or photometric == "PALETTE COLOR":
            return _colour(ds, arr, photometric, index, n_frames)
        if arr.ndim != 2:
            return SkipReason(
                SkipReasonValues.UNSUPPORTED, f"frame shape {arr.shape} is not 2-D ({photometric})"
            )
        return _grey(ds, arr, photometric, index, n_frames)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return SkipReason(SkipReasonValues.UNSUPPORTED, f"{type(exc).__name__}: {exc}"[:500])


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    if uid is None:
        return "data set without SOP Class UID"
    name = UID(str(uid)).name
    return f"{name} ({uid})" if name != str(uid) else f"SOP Class {uid}"


def _with_transfer_syntax(ds: Dataset) -> Dataset:
    """A data set read without a Transfer Syntax UID in its meta gets the one it was read
    with (a shallow copy; the caller's data set is not changed)."""
    meta = getattr(ds, "file_meta", None)
    if "PixelData" not in ds or (meta is not None and "TransferSyntaxUID" in meta):
        return ds
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None or little is None:
        return ds
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    out = copy.copy(ds)
    new_meta = FileMetaDataset(meta) if meta is not None else FileMetaDataset()
    new_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little
        else ExplicitVRBigEndian
    )
    out.file_meta = new_meta
    return out


def _decode_frame(ds: Dataset, index: int, n_frames: int) -> npt.NDArray[Any]:
    from pydicom.pixels.utils import pixel_array

    jpeg_extended.register()  # 12-bit JPEG Extended through GDCM, after pydicom's plugins
    if "PixelData" in ds and hasattr(ds, "file_meta") and "TransferSyntaxUID" in ds.file_meta:
        try:
            arr = pixel_array(ds, index=index if n_frames > 1 else None)
        except NotImplementedError:
            arr = _all_frames(ds, index, n_frames)
    else:
        arr = _all_frames(ds, index, n_frames)
    return np.asarray(arr)


def _all_frames(ds: Dataset, index: int, n_frames: int) -> npt.NDArray[Any]:
    arr = np.asarray(ds.pixel_array)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    per_frame_ndim = 2 if spp == 1 else 3
    if n_frames > 1 and arr.ndim == per_frame_ndim + 1:
        arr = arr[index]
    return arr


def _to_uint8_unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Values in [0, 1] (any outside are clipped) to uint8 0..255."""
    return np.asarray(np.rint(np.clip(x, 0.0, 1.0) * 255.0), dtype=np.uint8)


_MAX_TABLE = 1 << 17  # integer frames spanning fewer stored values go through a table


def _grey(
    ds: Dataset, arr: npt.NDArray[Any], photometric: str, index: int, n_frames: int
) -> NormalisedImage:
    """Integer pixels: the whole grey pipeline is computed once per stored value present
    (a table of at most ``_MAX_TABLE`` entries) and the frame is mapped through it; the
    fallback percentiles come exactly from the histogram. Other pixels: element-wise."""
    from pydicom.pixels.processing import apply_modality_lut

    is_stored = "PixelData" in ds
    if arr.dtype.kind in "iu" and arr.size and int(arr.max()) - int(arr.min()) < _MAX_TABLE:
        lo, hi = int(arr.min()), int(arr.max())
        if arr.dtype.kind == "u":
            lo = 0  # index the table with the stored values themselves
        ramp = np.arange(lo, hi + 1).astype(arr.dtype)

        def counts() -> npt.NDArray[np.int64]:
            flat = arr.ravel()
            shifted = flat if lo == 0 else flat.astype(np.int64) - lo
            return np.bincount(shifted, minlength=hi - lo + 1)

        values = apply_modality_lut(ramp, ds) if is_stored else ramp
        unit, source, window = voi_to_unit(ds, np.asarray(values, np.float64), counts)
        if photometric == "MONOCHROME1":
            unit = 1.0 - unit
        table = _to_uint8_unit(unit)
        grey = table[arr] if lo == 0 else table[arr.astype(np.int64) - lo]
    else:
        values = np.asarray(apply_modality_lut(arr, ds) if is_stored else arr, np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            fill = float(values[finite].min()) if finite.any() else 0.0
            values = np.where(finite, values, fill)
        unit, source, window = voi_to_unit(ds, values, None)
        if photometric == "MONOCHROME1":
            unit = 1.0 - unit
        grey = _to_uint8_unit(unit)
    rgb = np.stack([grey, grey, grey], axis=-1)
    return NormalisedImage(rgb, index, n_frames, photometric, source, window)


def _colour(
    ds: Dataset, arr: npt.NDArray[Any], photometric: str, index: int, n_frames: int
) -> NormalisedImage | SkipReason:
    from pydicom.pixels.processing import apply_color_lut

    if photometric == "PALETTE COLOR":
        if arr.ndim != 2:
            return SkipReason(
                SkipReasonValues.UNSUPPORTED, f"PALETTE COLOR frame shape {arr.shape} is not 2-D"
            )
        rgb_any = np.asarray(apply_color_lut(arr, ds))
        bits = 8 if rgb_any.dtype == np.uint8 else _palette_bits(rgb_any)
    else:
        rgb_any = arr[..., :3]
        bits = int(ds.get("BitsStored", 8) or 8)
        if rgb_any.dtype == np.uint8:
            bits = 8
    if bits == 8 and rgb_any.dtype == np.uint8:
        rgb = rgb_any
    else:
        scale = float((1 << bits) - 1)
        rgb = _to_uint8_unit(np.asarray(rgb_any, dtype=np.float64) / scale)
    return NormalisedImage(
        np.ascontiguousarray(rgb, dtype=np.uint8),
        index,
        n_frames,
        photometric,
        VoiSourceValues.COLOUR,
        None,
    )


def _palette_bits(rgb: npt.NDArray[Any]) -> int:
    """16-bit palette entries sometimes hold 8-bit values; use the range actually there."""
    peak = int(rgb.max()) if rgb.size else 0
    return 8 if peak < 256 else 16
