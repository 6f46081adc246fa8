"""An uploaded query image (``POST /similar``): a DICOM data set, normalised as the
indexer normalises stored images, or a PNG/JPEG picture; both become RGB pixels the
image tower embeds.

The byte limit of a request does not bound what it decodes to (an 875 KB PNG can hold
30000×30000 pixels), so every upload's decoded size is read from its header first and
bounded before anything is decoded (:class:`UploadLimits`):

- one upload: at most ``max_pixels`` pixel values — width × height × samples per
  pixel (PNG, JPEG), Rows × Columns × SamplesPerPixel × NumberOfFrames (DICOM) —
  else :class:`~node.errors.PayloadTooLarge` (413) naming the limit;
- all uploads together: a :class:`DecodeBudget` of pixel values being decoded at once
  (twice ``max_pixels`` by default); an upload waits briefly for its share, then gets
  :class:`~node.errors.Busy` (503 with ``Retry-After``).

Pictures are opened with the format's own PIL plugin, which reads the header and
decodes nothing, so PIL's process-wide decompression-bomb setting is neither needed
nor changed.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from node.errors import Busy, InvalidQuery, PayloadTooLarge

if TYPE_CHECKING:
    from PIL import ImageFile
    from pydicom.dataset import Dataset

__all__ = [
    "UPLOAD_MEDIA_TYPES",
    "DecodeBudget",
    "DecodedUpload",
    "UploadLimits",
    "UploadMediaTypeValues",
    "decode_upload",
]


class UploadMediaTypeValues(str, Enum):
    """The media types ``POST /similar`` accepts."""

    DICOM = "application/dicom"
    PNG = "image/png"
    JPEG = "image/jpeg"


#: the media types ``POST /similar`` accepts, as strings
UPLOAD_MEDIA_TYPES = tuple(v.value for v in UploadMediaTypeValues)

_PNG_SIGNATURE, _JPEG_SIGNATURE = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


@dataclass(frozen=True, slots=True)
class DecodedUpload:
    pixels: npt.NDArray[np.uint8]  #: H×W×3 RGB
    patient_id: str | None


class DecodeBudget:
    """The pixel values all uploads may be decoding at once (thread-safe).

    :meth:`hold` takes an upload's share for as long as it decodes; when the budget is
    spent it waits at most ``wait_s`` for others to finish, then raises
    :class:`~node.errors.Busy`.
    """

    def __init__(self, *, pixels: int, wait_s: float = 5.0) -> None:
        if pixels < 1:
            raise ValueError(f"pixels must be at least 1, not {pixels}")
        if wait_s < 0:
            raise ValueError(f"wait_s must be zero or more, not {wait_s}")
        self.pixels, self.wait_s = pixels, wait_s
        self._free = pixels
        self._changed = threading.Condition()

    @property
    def free(self) -> int:
        """Pixel values not held by any upload now."""
        with self._changed:
            return self._free

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` (at most the whole budget) while the block runs."""
        share = min(max(pixels, 0), self.pixels)
        deadline = time.monotonic() + self.wait_s
        with self._changed:
            while self._free < share:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy("the node is decoding as many uploaded pixels as it may at "
                               "once: send the image again in a few seconds",
                               retry_after_s=max(1, round(self.wait_s)))
                self._changed.wait(left)
            self._free -= share
        try:
            yield
        finally:
            with self._changed:
                self._free += share
                self._changed.notify_all()


class UploadLimits:
    """How much one upload may decode to (``max_pixels`` pixel values), and the
    :class:`DecodeBudget` all uploads share (twice ``max_pixels`` unless given)."""

    def __init__(self, *, max_pixels: int, budget: DecodeBudget | None = None) -> None:
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, not {max_pixels}")
        self.max_pixels = max_pixels
        self.budget = budget if budget is not None else DecodeBudget(pixels=2 * max_pixels)

    def check(self, pixels: int, what: str) -> None:
        """:class:`~node.errors.PayloadTooLarge` when ``pixels`` is over the limit."""
        if pixels > self.max_pixels:
            raise PayloadTooLarge(
                f"{what} decodes to {pixels:,} pixel values; this node decodes at most "
                f"{self.max_pixels:,} per upload ([http] max_upload_pixels): send a "
                "smaller image (fewer pixels, or one frame)")


# --------------------------------------------------------------------------- DICOM


def _header_int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword)
        return default if value in (None, "") else int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _dicom_pixels(ds: Dataset) -> int:
    """Rows × Columns × SamplesPerPixel × NumberOfFrames, from the header (0 without
    pixel data: the normaliser says why there is no picture)."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return 0
    sizes = [_header_int(ds, "Rows", 0), _header_int(ds, "Columns", 0),
             _header_int(ds, "SamplesPerPixel", 1), _header_int(ds, "NumberOfFrames", 1)]
    pixels = 1
    for size in sizes:
        pixels *= max(size, 1)
    return pixels


def _decode_dicom(data: bytes, limits: UploadLimits) -> DecodedUpload:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from indexer.normalise import NormalisedImage, normalise_dataset

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidQuery(f"the uploaded DICOM data set cannot be decoded: {exc}") from exc
    pixels = _dicom_pixels(ds)
    limits.check(pixels, "the uploaded DICOM data set")
    with limits.budget.hold(pixels):
        result = normalise_dataset(ds)
    if not isinstance(result, NormalisedImage):
        raise InvalidQuery(f"the uploaded DICOM data set has no usable picture ({result})")
    patient = str(ds.get("PatientID", "") or "") or None
    return DecodedUpload(result.pixels, patient)


# --------------------------------------------------------------------------- pictures


def _open_picture(data: bytes, kind: str) -> ImageFile.ImageFile:
    """The picture's header, by its signature (not the declared type); nothing decoded."""
    from PIL import JpegImagePlugin, PngImagePlugin

    if data.startswith(_PNG_SIGNATURE):
        return PngImagePlugin.PngImageFile(io.BytesIO(data))
    if data.startswith(_JPEG_SIGNATURE):
        return JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    raise InvalidQuery(f"the uploaded {kind} image cannot be decoded: it is neither a PNG "
                       "nor a JPEG file")


def _decode_picture(data: bytes, media_type: UploadMediaTypeValues,
                    limits: UploadLimits) -> DecodedUpload:
    kind = media_type.value.split("/")[1].upper()
    try:
        with _open_picture(data, kind) as image:
            width, height = image.size
            pixels = width * height * len(image.getbands())
            limits.check(pixels, f"the uploaded {kind} image ({width}×{height})")
            with limits.budget.hold(pixels):
                image.load()
                rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (SyntaxError, OSError, ValueError, EOFError) as exc:
        raise InvalidQuery(f"the uploaded {kind} image cannot be decoded: {exc}") from exc
    return DecodedUpload(rgb, None)


def decode_upload(data: bytes, media_type: str | UploadMediaTypeValues,
                  limits: UploadLimits) -> DecodedUpload:
    """An uploaded DICOM data set, PNG or JPEG as a model-ready RGB picture, decoded only
    when ``limits`` allow its size."""
    if not data:
        raise InvalidQuery("the request body is empty: send a DICOM file, PNG or JPEG")
    try:
        kind = UploadMediaTypeValues(media_type)
    except ValueError:
        raise InvalidQuery(f"media type {media_type!r} is not accepted: send one of "
                           + ", ".join(UPLOAD_MEDIA_TYPES)) from None
    if kind is UploadMediaTypeValues.DICOM:
        return _decode_dicom(data, limits)
    return _decode_picture(data, kind, limits)
