"""What each SOP class is to similar-case retrieval (PS3.4 Annex B, the Storage SOP
Classes): a picture of a case, a slice of a cross-sectional volume, or not an image for
retrieval at all.

Segmentations, structured reports (Key Object Selection included), presentation states,
RT structure sets, plans, doses and records, raw data, registrations, waveforms,
encapsulated documents (PDF, CDA, STL…), spectroscopy and measurement objects describe or
annotate a case: they are never embedded, even when they carry pixel data (a SEG's
binary frames, an RT Dose grid), and are recorded as skipped with
:func:`not_an_image_reason`. Classes outside the standard's storage branch
(``1.2.840.10008.5.1.4.1.1.``) that are standard UIDs (hanging protocols, colour palettes,
implant templates…) are not images either; private SOP classes are judged by their
pixels.

Cross-sectional image classes (:func:`is_cross_sectional`) are those whose single-frame
instances are the slices of one acquisition: CT, MR, PET and NM images. A series of them
is a volume and is sampled (:mod:`indexer.sampling`); everything else that has pixels is
embedded instance by instance.
"""

from __future__ import annotations

from pydicom.uid import UID

__all__ = ["CROSS_SECTIONAL", "is_cross_sectional", "not_an_image_reason", "sop_class_name"]

_STORAGE = "1.2.840.10008.5.1.4.1.1."
_STANDARD = "1.2.840.10008."

#: single-frame instances of these classes are slices of a volume
CROSS_SECTIONAL = frozenset({
    _STORAGE + "2",  # CT Image Storage
    _STORAGE + "2.1",  # Enhanced CT Image Storage
    _STORAGE + "2.2",  # Legacy Converted Enhanced CT Image Storage
    _STORAGE + "4",  # MR Image Storage
    _STORAGE + "4.1",  # Enhanced MR Image Storage
    _STORAGE + "4.3",  # Enhanced MR Color Image Storage
    _STORAGE + "4.4",  # Legacy Converted Enhanced MR Image Storage
    _STORAGE + "20",  # Nuclear Medicine Image Storage
    _STORAGE + "5",  # Nuclear Medicine Image Storage (retired)
    _STORAGE + "128",  # Positron Emission Tomography Image Storage
    _STORAGE + "128.1",  # Legacy Converted Enhanced PET Image Storage
    _STORAGE + "130",  # Enhanced PET Image Storage
})

#: families of storage classes that are not images for retrieval (prefix after _STORAGE)
_NOT_IMAGE_FAMILIES = (
    "11.",  # presentation states
    "88.",  # structured reports, Key Object Selection
    "9.",  # waveforms (ECG, audio, hemodynamic…)
    "104.",  # encapsulated PDF, CDA, STL, OBJ, MTL
    "66.",  # registrations, fiducials, segmentations, tractography
    "68.",  # surface scans
    "78.",  # ophthalmic measurements
    "200.",  # protocols
    "201.",  # inventories
)
#: single storage classes that are not images for retrieval (suffix after _STORAGE)
_NOT_IMAGE_CLASSES = frozenset({
    "4.2",  # MR Spectroscopy Storage
    "8",  # Standalone Overlay (retired)
    "9",  # Standalone Curve (retired)
    "10",  # Standalone Modality LUT (retired)
    "11",  # Standalone VOI LUT (retired)
    "66",  # Raw Data Storage
    "67",  # Real World Value Mapping Storage
    "77.1.5.3",  # Stereometric Relationship Storage
    "79.1",  # Macular Grid Thickness and Volume Report Storage
    "80.1",  # Ophthalmic Visual Field Static Perimetry Measurements Storage
    "90.1",  # Content Assessment Results Storage
    "91.1",  # Microscopy Bulk Simple Annotations Storage
    "131",  # Basic Structured Display Storage
    "129",  # Standalone PET Curve (retired)
    "501.3",  # DICOS Threat Detection Report Storage
})
#: RT objects that are images (everything else under 481. is a plan, dose, structure…)
_RT_IMAGES = frozenset({"481.1", "481.23", "481.24"})


def sop_class_name(sop_class_uid: str) -> str:
    """The SOP class as a person reads it: its name and UID (pydicom's dictionary), or the
    UID alone when pydicom does not know it."""
    uid = str(sop_class_uid).strip()
    name = UID(uid).name if uid else ""
    return f"{name} {uid}" if name and name != uid else uid or "(no SOP Class UID)"


def _is_not_an_image(uid: str) -> bool:
    if not uid.startswith(_STANDARD):
        return False  # a private class: its pixels decide
    if not uid.startswith(_STORAGE):
        return True  # hanging protocols, palettes, templates, queries…
    suffix = uid[len(_STORAGE):]
    if suffix in _NOT_IMAGE_CLASSES or suffix.startswith(_NOT_IMAGE_FAMILIES):
        return True
    return suffix.startswith("481.") and suffix not in _RT_IMAGES


def not_an_image_reason(sop_class_uid: str | None) -> str | None:
    """Why an object of this class is never embedded, or None when it may be an image."""
    uid = str(sop_class_uid or "").strip()
    if not uid or not _is_not_an_image(uid):
        return None
    return f"not an image for retrieval (SOP class {sop_class_name(uid)})"


def is_cross_sectional(sop_class_uid: str | None) -> bool:
    """Whether single-frame instances of this class are the slices of a volume."""
    return str(sop_class_uid or "").strip() in CROSS_SECTIONAL
