"""The VOI step of the grayscale pipeline (PS3.4 N.2): modality values to [0, 1].

The VOI LUT Sequence when present (its first LUT), otherwise the first window
centre/width through its VOI LUT Function (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT,
SIGMOID), otherwise a window over the 0.5th to 99.5th percentile of the frame's values.
:func:`apply_window` and :func:`first_window` are also what WADO-RS rendering uses, so a
rendered frame and the model's picture agree.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

__all__ = ["VoiSourceValues", "apply_window", "first_window", "voi_to_unit"]

_LOW_PERCENTILE = 0.5
_HIGH_PERCENTILE = 99.5


class VoiSourceValues(str, enum.Enum):
    """Where the grey-level mapping of a :class:`~indexer.normalise.NormalisedImage` came
    from."""

    VOI_LUT = "voi_lut"
    WINDOW = "window"
    PIXEL_RANGE = "pixel_range"  # the documented fallback (percentiles)
    COLOUR = "colour"  # colour images take no VOI


def voi_to_unit(
    ds: Dataset,
    values: npt.NDArray[np.float64],
    count_values: Callable[[], npt.NDArray[np.int64]] | None,
) -> tuple[npt.NDArray[np.float64], VoiSourceValues, tuple[float, float] | None]:
    """VOI LUT, else first window, else the percentile fallback; to [0, 1].

    ``count_values``, when given, says how often each entry of ``values`` occurs in the
    frame (called only when the fallback needs it).
    """
    from pydicom.pixels.processing import apply_voi_lut

    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        lut_in = np.rint(values).astype(np.int64)  # a LUT is indexed by stored integers
        lut_out = np.asarray(apply_voi_lut(lut_in, ds, index=0, prefer_lut=True), np.float64)
        lo, hi = _lut_range(ds.VOILUTSequence[0])
        if hi > lo:
            return (lut_out - lo) / (hi - lo), VoiSourceValues.VOI_LUT, None
    centre_width = first_window(ds)
    if centre_width is not None:
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
        unit = apply_window(values, centre_width[0], centre_width[1], function)
        return unit, VoiSourceValues.WINDOW, centre_width
    counts = None if count_values is None else count_values()
    lo, hi = _percentiles(values, counts, (_LOW_PERCENTILE, _HIGH_PERCENTILE))
    if hi <= lo:
        present = values if counts is None else values[counts > 0]
        lo, hi = float(present.min()), float(present.max())
    if hi <= lo:
        return np.zeros_like(values), VoiSourceValues.PIXEL_RANGE, None
    window = ((lo + hi) / 2.0, hi - lo)
    unit = apply_window(values, window[0], window[1], "LINEAR_EXACT")
    return unit, VoiSourceValues.PIXEL_RANGE, window


def _percentiles(
    values: npt.NDArray[np.float64], counts: npt.NDArray[np.int64] | None, ps: tuple[float, float]
) -> tuple[float, float]:
    """``np.percentile`` (linear) of the frame, from the values and their counts."""
    if counts is None:
        a, b = np.percentile(values, ps)
        return float(a), float(b)
    order = np.argsort(values, kind="stable")
    v, c = values[order], np.cumsum(counts[order])
    n = int(c[-1])
    out = []
    for p in ps:
        pos = p / 100.0 * (n - 1)
        below = int(np.floor(pos))
        x0 = v[np.searchsorted(c, below, side="right")]
        x1 = v[np.searchsorted(c, min(below + 1, n - 1), side="right")]
        out.append(float(x0 + (pos - below) * (x1 - x0)))
    return out[0], out[1]


def first_window(ds: Dataset) -> tuple[float, float] | None:
    """The data set's first window (centre, width), or ``None`` when it has none usable
    (missing, not numbers, or a width that is not above 0)."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    c, w = ds.WindowCenter, ds.WindowWidth
    try:
        centre = float(c[0] if _is_multi(c) else c)
        width = float(w[0] if _is_multi(w) else w)
    except (TypeError, ValueError, IndexError):
        return None
    if not (math.isfinite(centre) and math.isfinite(width)) or width <= 0:
        return None
    return centre, width


def _is_multi(value: object) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def apply_window(
    x: npt.NDArray[np.float64], centre: float, width: float, function: str
) -> npt.NDArray[np.float64]:
    """The VOI LUT functions of PS3.3 C.11.2.1.2 (``function`` as VOI LUT Function
    (0028,1056) names it: LINEAR, LINEAR_EXACT or SIGMOID), to [0, 1]; values of the
    linear forms outside the window fall outside [0, 1] (clip them)."""
    if function == "SIGMOID":
        return np.asarray(1.0 / (1.0 + np.exp(-4.0 * (x - centre) / width)))
    if function == "LINEAR" and width > 1:
        return np.asarray(((x - (centre - 0.5)) / (width - 1.0)) + 0.5)
    # LINEAR_EXACT (and LINEAR with width <= 1, which the standard leaves undefined)
    return np.asarray((x - centre) / width + 0.5)


def _lut_range(item: Dataset) -> tuple[float, float]:
    """The output range of a VOI LUT: the smallest and largest value in its data."""
    raw = item.LUTData
    if isinstance(raw, (bytes, bytearray)):
        bits = int(item.LUTDescriptor[2])
        data = np.frombuffer(raw, dtype="<u2" if bits > 8 else "u1")
    else:
        data = np.asarray(raw if _is_multi(raw) else [raw], dtype=np.float64)
    if data.size == 0:
        return 0.0, 0.0
    return float(data.min()), float(data.max())
