"""Volume sampling as pure functions: which slices and frames represent a volume, the
slice axis from the Image Plane Module, and what each SOP class is to retrieval."""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    BasicTextSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    MRImageStorage,
    RawDataStorage,
    RTDoseStorage,
    RTImageStorage,
    RTStructureSetStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    UltrasoundMultiFrameImageStorage,
)

from indexer.image_plane import SliceHeader, frame_positions, normal, slice_header
from indexer.sampling import VolumeSampling, choose_frames, choose_slices, evenly, order_slices
from indexer.sop_classes import is_cross_sectional, not_an_image_reason, sop_class_name
from tests.indexer._dicom import PYDICOM_FILES, pydicom_data_files

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # normal (-1, 0, 0): x decreasing


def _series(n: int, orientation: tuple[float, ...] = AXIAL, *, step: float = 2.5,
            positions: bool = True) -> list[SliceHeader]:
    axis = normal(orientation)  # type: ignore[arg-type]
    assert axis is not None
    out = []
    for i in range(n):
        place = -100.0 + i * step
        position = (10 + place * axis[0], -5 + place * axis[1], 3 + place * axis[2])
        out.append(SliceHeader(
            sop_instance_uid=f"1.2.3.{i}", series_instance_uid="1.2.3",
            study_instance_uid="1.2", modality="CT",
            # the instance numbers run against the axis: position must win
            instance_number=n - i,
            position=position if positions else None,
            orientation=orientation if positions else None,  # type: ignore[arg-type]
        ))
    return out


def test_evenly_takes_the_centres_of_equal_parts() -> None:
    assert evenly(300, 16) == [(2 * i + 1) * 300 // 32 for i in range(16)]
    assert evenly(300, 16)[0] == 9 and evenly(300, 16)[-1] == 290  # symmetric ends
    assert evenly(10, 1) == [5]  # the middle, as a multi-frame object's one frame
    assert evenly(5, 16) == [0, 1, 2, 3, 4]  # a short series whole
    assert evenly(7, 0) == list(range(7))  # 0: every slice
    picks = evenly(301, 16)
    assert len(set(picks)) == 16 and picks == sorted(picks)
    with pytest.raises(ValueError, match="must not be negative"):
        evenly(3, -1)


@pytest.mark.parametrize("orientation", [AXIAL, SAGITTAL])
def test_slices_are_ordered_along_the_normal_not_by_arrival_or_number(
    orientation: tuple[float, ...],
) -> None:
    members = _series(40, orientation)
    expected = [m.sop_instance_uid for m in members]  # built in order along the normal
    rng = random.Random(7)
    for _ in range(5):
        shuffled = members[:]
        rng.shuffle(shuffled)
        assert [m.sop_instance_uid for m in order_slices(shuffled)] == expected
        assert choose_slices(shuffled, 4) == [expected[i] for i in evenly(40, 4)]


def test_without_positions_the_instance_number_orders() -> None:
    members = _series(12, positions=False)
    ordered = order_slices(list(reversed(members)))
    assert [m.instance_number for m in ordered] == list(range(1, 13))
    # a missing instance number goes last, the UID breaks ties
    odd = [*members[:3], SliceHeader("9.9", "1.2.3", "1.2", "CT", None, None, None)]
    assert order_slices(odd)[-1].sop_instance_uid == "9.9"


def test_one_slice_without_position_orders_the_series_by_number() -> None:
    members = _series(6)
    members[2] = SliceHeader(members[2].sop_instance_uid, "1.2.3", "1.2", "CT",
                             members[2].instance_number, None, AXIAL)
    numbers = [m.instance_number for m in order_slices(members)]
    assert numbers == sorted(n for n in numbers if n is not None)


def test_frames_are_chosen_along_their_positions() -> None:
    places = [5.0, 1.0, 4.0, 0.0, 3.0, 2.0]  # stored out of order
    # along the axis the frames are 3, 1, 5, 4, 2, 0; ranks 1, 3 and 5 are taken
    assert choose_frames(6, 3, places) == [1, 4, 0]
    assert choose_frames(6, 3) == [1, 3, 5]  # stored order
    assert choose_frames(6, 1) == [3]  # the middle frame, as before
    assert choose_frames(6, 0, places) == [3, 1, 5, 4, 2, 0]  # every frame, along the axis
    with pytest.raises(ValueError, match="2 frame places for 6 frames"):
        choose_frames(6, 3, [0.0, 1.0])


def test_sampling_settings() -> None:
    s = VolumeSampling(slices_per_series=16, per_modality={"mr": 24, "PT": 0})
    assert (s.k("CT"), s.k("MR"), s.k("pt"), s.k(None)) == (16, 24, 0, 16)
    assert VolumeSampling.every_slice().k("CT") == 0
    with pytest.raises(ValueError, match="slices_per_series"):
        VolumeSampling(slices_per_series=-1)
    with pytest.raises(ValueError, match=r"per_modality\['MR'\]"):
        VolumeSampling(per_modality={"MR": -2})


def test_slice_header_and_frame_positions_from_real_files() -> None:
    ct = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm", stop_before_pixels=True)
    header = slice_header(ct)
    assert header.position == tuple(float(v) for v in ct.ImagePositionPatient)
    assert header.orientation is not None and header.instance_number is not None
    [path] = [p for p in pydicom_data_files() if p.name == "eCT_Supplemental.dcm"]
    enhanced = pydicom.dcmread(path, stop_before_pixels=True)
    places = frame_positions(enhanced)
    assert places is not None and len(places) == 2 and places[0] != places[1]


def test_frame_positions_need_every_frame() -> None:
    ds = Dataset()
    ds.NumberOfFrames = 2
    frame = Dataset()
    plane = Dataset()
    plane.ImagePositionPatient = [0, 0, 1]
    frame.PlanePositionSequence = [plane]
    ds.PerFrameFunctionalGroupsSequence = [frame, Dataset()]
    assert frame_positions(ds) is None  # no orientation, and frame 2 has no position


@pytest.mark.parametrize(
    ("uid", "name"),
    [
        (SegmentationStorage, "Segmentation Storage"),
        (BasicTextSRStorage, "Basic Text SR Storage"),
        (KeyObjectSelectionDocumentStorage, "Key Object Selection Document Storage"),
        (GrayscaleSoftcopyPresentationStateStorage, "Grayscale Softcopy Presentation State"),
        (RTStructureSetStorage, "RT Structure Set Storage"),
        (RTDoseStorage, "RT Dose Storage"),
        (RawDataStorage, "Raw Data Storage"),
        (EncapsulatedPDFStorage, "Encapsulated PDF Storage"),
        ("1.2.840.10008.5.1.4.38.1", "Hanging Protocol Storage"),
    ],
)
def test_objects_that_are_not_cases_are_named(uid: str, name: str) -> None:
    reason = not_an_image_reason(uid)
    assert reason is not None
    assert reason.startswith(f"not an image for retrieval (SOP class {name}")
    assert reason.endswith(f"{uid})")


@pytest.mark.parametrize("uid", [CTImageStorage, MRImageStorage, ComputedRadiographyImageStorage,
                                 SecondaryCaptureImageStorage, UltrasoundMultiFrameImageStorage,
                                 RTImageStorage, "1.3.12.2.1107.5.9.1", "31", None])
def test_images_and_private_classes_may_be_embedded(uid: str | None) -> None:
    assert not_an_image_reason(uid) is None


def test_cross_sectional_classes() -> None:
    assert is_cross_sectional(CTImageStorage) and is_cross_sectional(MRImageStorage)
    assert not is_cross_sectional(SecondaryCaptureImageStorage)
    assert not is_cross_sectional(ComputedRadiographyImageStorage)
    assert sop_class_name("1.2.3.4") == "1.2.3.4"
    assert np.isclose(sum(v * v for v in normal(SAGITTAL) or ()), 1.0)
