"""One collection image as a DICOM Secondary Capture Image (highdicom ``SCImage``),
with UIDs that depend only on the collection's name and the image's place in it, so
importing the same folder twice yields the same instances.

The pixels are kept as they are (8-bit grey, 16-bit grey, or 8-bit RGB; other PNG/JPEG
modes are converted to the nearest of these), uncompressed. The Modality is the one the
user states (``OT`` by default). Patient Orientation is unknown for a picture from a
folder and is left empty (Type 2).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from node.errors import CollectionError

__all__ = [
    "BrokenImage",
    "CaptureUids",
    "capture_uids",
    "check_modality",
    "patient_id_for",
    "read_pixels",
    "secondary_capture",
]

_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")
_MANUFACTURER = "Precedent collection import"


class BrokenImage(Exception):
    """The file is not a PNG or JPEG image Pillow can read; the message says why."""


@dataclass(frozen=True, slots=True)
class CaptureUids:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str


def capture_uids(collection: str, study_key: str, relpath: str) -> CaptureUids:
    """Deterministic UIDs (PS3.5 B.2, pydicom's UUID-derived root): the study and series
    from the collection and the study key, the instance from the collection and the
    image's path in it."""
    return CaptureUids(
        generate_uid(entropy_srcs=[collection, "study", study_key]),
        generate_uid(entropy_srcs=[collection, "series", study_key]),
        generate_uid(entropy_srcs=[collection, "instance", relpath]),
    )


def patient_id_for(collection: str, key: str) -> str:
    """A stable patient ID when the collection names none (one patient per study key)."""
    digest = hashlib.sha1(f"{collection}\0{key}".encode()).hexdigest()[:12]
    return f"{collection[:40]}-{digest}"


def read_pixels(path: object) -> tuple[np.ndarray, str, int]:
    """The image's pixels, photometric interpretation and bits allocated; raises
    :class:`BrokenImage` when Pillow cannot read the file."""
    try:
        with Image.open(path) as image:  # type: ignore[arg-type]
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                return np.asarray(image, dtype=np.uint16), "MONOCHROME2", 16
            if image.mode in ("I", "F"):
                data = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
                return data, "MONOCHROME2", 16
            if image.mode in ("1", "L", "LA", "La"):
                return np.asarray(image.convert("L"), dtype=np.uint8), "MONOCHROME2", 8
            return np.asarray(image.convert("RGB"), dtype=np.uint8), "RGB", 8
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise BrokenImage(f"not a readable PNG/JPEG image ({exc})") from exc


def check_modality(modality: str | None) -> str:
    value = (modality or "OT").strip().upper()
    if not _MODALITY.match(value):
        raise CollectionError(f"--modality {modality!r} is not a DICOM modality (e.g. CR, "
                              "DX, OT)")
    return value


def secondary_capture(pixels: np.ndarray, photometric: str, bits: int, *, uids: CaptureUids,
                      instance_number: int, modality: str, patient_id: str,
                      description: str) -> Dataset:
    """The Secondary Capture Image of one picture."""
    sc = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation=photometric,
        bits_allocated=bits,
        coordinate_system="PATIENT",
        study_instance_uid=uids.study_instance_uid,
        series_instance_uid=uids.series_instance_uid,
        sop_instance_uid=uids.sop_instance_uid,
        series_number=1,
        instance_number=instance_number,
        manufacturer=_MANUFACTURER,
        patient_id=patient_id,
        patient_name=patient_id.replace("^", " ") + "^",  # one component: the family name
        patient_orientation=("L", "F"),  # highdicom asks for one; emptied below (unknown)
    )
    del sc.PatientOrientation
    sc.add_new(0x00200020, "CS", None)  # Patient Orientation (Type 2): unknown
    sc.Modality = modality
    sc.SeriesDescription = description[:64]
    sc.StudyDescription = description[:64]
    return sc
