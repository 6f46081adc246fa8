"""An uploaded query image (``POST /similar``): a DICOM data set, normalised as the
indexer normalises stored images, or a PNG/JPEG picture; both become RGB pixels the
image tower embeds."""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from node.errors import InvalidQuery

__all__ = ["UPLOAD_MEDIA_TYPES", "DecodedUpload", "UploadMediaTypeValues", "decode_upload"]


class UploadMediaTypeValues(str, Enum):
    """The media types ``POST /similar`` accepts."""

    DICOM = "application/dicom"
    PNG = "image/png"
    JPEG = "image/jpeg"


#: the media types ``POST /similar`` accepts, as strings
UPLOAD_MEDIA_TYPES = tuple(v.value for v in UploadMediaTypeValues)


@dataclass(frozen=True, slots=True)
class DecodedUpload:
    pixels: npt.NDArray[np.uint8]  #: H×W×3 RGB
    patient_id: str | None


def _decode_dicom(data: bytes) -> DecodedUpload:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from indexer.normalise import NormalisedImage, normalise_dataset

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidQuery(f"the uploaded DICOM data set cannot be decoded: {exc}") from exc
    result = normalise_dataset(ds)
    if not isinstance(result, NormalisedImage):
        raise InvalidQuery(f"the uploaded DICOM data set has no usable picture ({result})")
    patient = str(ds.get("PatientID", "") or "") or None
    return DecodedUpload(result.pixels, patient)


def _decode_picture(data: bytes, media_type: UploadMediaTypeValues) -> DecodedUpload:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        kind = media_type.value.split("/")[1].upper()
        raise InvalidQuery(f"the uploaded {kind} image cannot be decoded: {exc}") from exc
    return DecodedUpload(np.asarray(rgb, dtype=np.uint8), None)


def decode_upload(data: bytes, media_type: str | UploadMediaTypeValues) -> DecodedUpload:
    """An uploaded DICOM data set, PNG or JPEG as a model-ready RGB picture."""
    if not data:
        raise InvalidQuery("the request body is empty: send a DICOM file, PNG or JPEG")
    try:
        kind = UploadMediaTypeValues(media_type)
    except ValueError:
        raise InvalidQuery(f"media type {media_type!r} is not accepted: send one of "
                           + ", ".join(UPLOAD_MEDIA_TYPES)) from None
    if kind is UploadMediaTypeValues.DICOM:
        return _decode_dicom(data)
    return _decode_picture(data, kind)
