"""Normalisation: every pydicom test file, and the invariants of the grey/colour pipeline."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from indexer.normalise import (
    NormalisedImage,
    SkipReason,
    SkipReasonValues,
    VoiSourceValues,
    choose_frame,
    normalise_dataset,
)
from tests.indexer._dicom import (
    PYDICOM_FILES,
    grey_dataset,
    pydicom_data_files,
    rgb_dataset,
    sr_dataset,
)

ALL_FILES = pydicom_data_files()


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def _data_store(name: str) -> Path:
    for p in ALL_FILES:
        if p.name == name:
            return p
    pytest.fail(f"{name} is not in the installed test data: install the pinned pydicom-data")


#: Not DICOM data sets at all (pydicom reads them, with force, as an empty data set).
NOT_DICOM = {
    "README", "README.txt", "crayons.icc", "rtplan.dump", "rtstruct.dump", "test1.json",
    "test_PN.json", "zipMR.gz",
}
#: DICOM objects without an image: reports, RT objects, waveforms, DICOMDIRs, and data
#: sets shipped without their pixels (or without the SOP Class UID that would say what
#: they are).
NO_IMAGE = {
    "DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-empty.dcm", "DICOMDIR-implicit",
    "DICOMDIR-nooffset", "DICOMDIR-nopatient", "DICOMDIR-reordered",
    "ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm", "UN_sequence.dcm",
    "empty_charset_LEI.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm", "no_meta.dcm",
    "no_meta_group_length.dcm", "priv_SQ.dcm", "reportsi.dcm",
    "reportsi_with_empty_number_tags.dcm", "rtplan.dcm", "rtplan_truncated.dcm",
    "rtstruct.dcm", "test-SR.dcm", "waveform_ecg.dcm",
}
#: The 50 CT images of pydicom's DICOMDIR tests (IM000000 … IM00001D): pixels stripped.
STRIPPED_DICOMDIR_IMAGES = re.compile(r"IM0000[0-9A-Z]{2}")
#: Images whose pixels cannot be decoded: damaged files, and transfer syntaxes no installed
#: pixel plugin handles. One name a line: a plugin that learns one moves it to the images
#: by deleting its line (JPEG-lossy.dcm, 12-bit JPEG Extended, left when the GDCM
#: fallback in indexer.jpeg_extended learnt it).
UNDECODABLE = {
    "JPEG2000-embedded-sequence-delimiter.dcm",
    "MR_truncated.dcm",
    "badVR.dcm",
    "meta_missing_tsyntax.dcm",
    "nested_priv_SQ.dcm",
}


def _expected(name: str) -> SkipReasonValues | None:
    """The reason a file gives no picture, None for a file that must give one."""
    if name in NOT_DICOM or name in NO_IMAGE or STRIPPED_DICOMDIR_IMAGES.fullmatch(name):
        return SkipReasonValues.NO_PIXEL_DATA
    if name in UNDECODABLE:
        return SkipReasonValues.UNDECODABLE
    return None


def test_the_test_data_is_there() -> None:
    assert len(ALL_FILES) > 150  # pydicom's own files plus pydicom-data
    names = {p.name for p in ALL_FILES}
    assert names >= NOT_DICOM | NO_IMAGE | UNDECODABLE, "an expectation names a missing file"
    assert sum(bool(STRIPPED_DICOMDIR_IMAGES.fullmatch(n)) for n in names) == 50
    images = [p for p in ALL_FILES if _expected(p.name) is None]
    assert len(images) > 120  # most of the test data are pictures


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_test_file_gives_its_expected_image_or_reason(path: Path) -> None:
    ds = _read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = normalise_dataset(ds)
    expected = _expected(path.name)
    if expected is None:
        assert isinstance(result, NormalisedImage), f"{path.name}: {result}"
        assert result.pixels.dtype == np.uint8
        assert result.pixels.ndim == 3 and result.pixels.shape[2] == 3
        assert result.pixels.flags.c_contiguous
        assert 0 <= result.frame_index < result.number_of_frames
    else:
        assert isinstance(result, SkipReason), f"{path.name} gave a picture, expected {expected}"
        assert result.code is expected, f"{path.name}: {result}"
        assert len(result.detail) > 10
        assert str(result).startswith(result.code.value + ": ")


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm", "JPGExtended.dcm",
        "image_dfl.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_422_uncompressed.dcm",
        "examples_palette.dcm", "SC_rgb_small_odd.dcm", "rtdose.dcm", "JPEG2000.dcm", "SC_rgb_jls_lossy_line.dcm",
        "liver_1frame.dcm", "OBXXXX1A_expb.dcm",
    ],
)
def test_known_images_decode_across_transfer_syntaxes(name: str) -> None:
    path = PYDICOM_FILES / name
    result = normalise_dataset(_read(path if path.exists() else _data_store(name)))
    assert isinstance(result, NormalisedImage), str(result)
    assert result.pixels.max() > result.pixels.min()  # not a blank picture


@pytest.mark.parametrize(
    "name,sop_class",
    [
        ("reportsi.dcm", "Basic Text SR Storage"),
        ("test-SR.dcm", "Comprehensive SR Storage"),
        ("rtplan.dcm", "RT Plan Storage"),
        ("waveform_ecg.dcm", "12-lead ECG Waveform Storage"),
    ],
)
def test_objects_without_images_are_skipped_with_their_class(name: str, sop_class: str) -> None:
    result = normalise_dataset(_read(PYDICOM_FILES / name))
    assert isinstance(result, SkipReason)
    assert result.code is SkipReasonValues.NO_PIXEL_DATA
    assert sop_class in result.detail


def test_truncated_pixels_are_a_clear_reason() -> None:
    result = normalise_dataset(_read(PYDICOM_FILES / "MR_truncated.dcm"))
    assert isinstance(result, SkipReason)
    assert result.code is SkipReasonValues.UNDECODABLE
    assert "less than expected" in result.detail


def test_synthetic_sr_names_its_class() -> None:
    result = normalise_dataset(sr_dataset())
    assert isinstance(result, SkipReason) and "Basic Text SR Storage" in str(result)


def _mirror_twin(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The other MONOCHROME twin: stored values mirrored, the window mirrored with them."""
    arr = ds.pixel_array.astype(np.int64)
    top = (1 << int(ds.BitsStored)) - 1
    twin = grey_dataset(
        (top - arr).astype(np.uint16),
        bits_stored=int(ds.BitsStored),
        photometric="MONOCHROME2" if ds.PhotometricInterpretation == "MONOCHROME1" else "MONOCHROME1",
    )
    if "WindowCenter" in ds:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        twin.RescaleSlope, twin.RescaleIntercept = slope, intercept
        c = ds.WindowCenter[0] if isinstance(ds.WindowCenter, pydicom.multival.MultiValue) else ds.WindowCenter
        w = ds.WindowWidth[0] if isinstance(ds.WindowWidth, pydicom.multival.MultiValue) else ds.WindowWidth
        twin.WindowCenter = slope * top + 2 * intercept - float(c)
        twin.WindowWidth = float(w)
        twin.VOILUTFunction = "LINEAR_EXACT"
    return twin


def test_monochrome1_and_its_monochrome2_twin_give_the_same_picture() -> None:
    original = _read(_data_store("RG1_UNCR.dcm"))  # a real MONOCHROME1 radiograph
    assert original.PhotometricInterpretation == "MONOCHROME1"
    original.VOILUTFunction = "LINEAR_EXACT"
    a = normalise_dataset(original)
    b = normalise_dataset(_mirror_twin(original))
    assert isinstance(a, NormalisedImage) and isinstance(b, NormalisedImage)
    assert a.voi_source is b.voi_source is VoiSourceValues.WINDOW
    diff = np.abs(a.pixels.astype(int) - b.pixels.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01
    assert a.pixels.std() > 10  # a real picture, not two blanks


def test_monochrome_twins_without_window_use_the_same_fallback() -> None:
    rng = np.random.default_rng(3)
    stored = rng.integers(100, 3000, (40, 30)).astype(np.uint16)
    m2 = grey_dataset(stored, bits_stored=12)
    m1 = grey_dataset((4095 - stored).astype(np.uint16), bits_stored=12, photometric="MONOCHROME1")
    a, b = normalise_dataset(m2), normalise_dataset(m1)
    assert isinstance(a, NormalisedImage) and isinstance(b, NormalisedImage)
    assert a.voi_source is VoiSourceValues.PIXEL_RANGE
    assert np.abs(a.pixels.astype(int) - b.pixels.astype(int)).max() <= 1
    # and MONOCHROME1 is inverted: the largest stored value is the darkest
    assert b.pixels[np.unravel_index(np.argmax(4095 - stored), stored.shape)][0] <= 2


def test_a_windowed_ct_maps_the_window_to_the_full_range() -> None:
    hu = np.linspace(-1000, 1000, 64 * 64).reshape(64, 64)
    stored = np.rint(hu + 1024).astype(np.int16)
    ds = grey_dataset(
        stored, signed=True, RescaleIntercept=-1024, RescaleSlope=1,
        WindowCenter=[40, 400], WindowWidth=[400, 1500],  # the first window counts
        VOILUTFunction="LINEAR_EXACT",
    )
    out = normalise_dataset(ds)
    assert isinstance(out, NormalisedImage) and out.window == (40.0, 400.0)
    g = out.pixels[..., 0]
    stored_hu = stored.astype(int) - 1024
    assert g[stored_hu <= -160].max() == 0
    assert g[stored_hu >= 240].min() == 255
    inside = (stored_hu > -150) & (stored_hu < 230)
    assert g[inside].min() > 0 and g[inside].max() < 255
    centre = np.argmin(np.abs(hu - 40))
    assert abs(int(g.flat[centre]) - 128) <= 2
    assert (out.pixels[..., 0] == out.pixels[..., 2]).all()  # grey in three channels


def test_linear_window_follows_the_standard_formula() -> None:
    # PS3.3 C.11.2.1.2.1: x <= c - 0.5 - (w-1)/2 -> min; x > c - 0.5 + (w-1)/2 -> max
    ds = grey_dataset(np.arange(0, 256, dtype=np.uint16).reshape(16, 16), bits_stored=8,
                      WindowCenter=128, WindowWidth=101)
    g = normalise_dataset(ds).pixels[..., 0].ravel()  # type: ignore[union-attr]
    assert g[77] == 0 and g[78] > 0
    assert g[178] == 255 and g[177] < 255


def test_a_colour_image_keeps_its_colours() -> None:
    rgb = np.zeros((30, 20, 3), np.uint8)
    rgb[:10, :, 0] = 255
    rgb[10:20, :, 1] = 255
    rgb[20:, :, 2] = 200
    out = normalise_dataset(rgb_dataset(rgb))
    assert isinstance(out, NormalisedImage) and out.voi_source is VoiSourceValues.COLOUR
    np.testing.assert_array_equal(out.pixels, rgb)


@pytest.mark.parametrize(
    "name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_422_uncompressed.dcm", "SC_rgb_rle_16bit.dcm"]
)
def test_ybr_and_16_bit_colour_become_the_same_rgb(name: str) -> None:
    out = normalise_dataset(_read(PYDICOM_FILES / name))
    assert isinstance(out, NormalisedImage)
    # pydicom's SC_rgb test pattern: red, light red, green, light green, blue… bands
    expected = [(255, 0, 0), (255, 128, 128), (0, 255, 0), (128, 255, 128), (0, 0, 255)]
    for band, colour in enumerate(expected):
        got = out.pixels[band * 10 + 5, 50].astype(int)
        assert np.abs(got - np.array(colour)).max() <= 8, (band, got)


def test_palette_colour_goes_through_its_lut() -> None:
    out = normalise_dataset(_read(_data_store("OBXXXX1A.dcm")))
    assert isinstance(out, NormalisedImage) and out.photometric_interpretation == "PALETTE COLOR"
    p = out.pixels.astype(int)
    assert (np.abs(p[..., 0] - p[..., 1]) > 20).mean() > 0.05  # really coloured


def test_multi_frame_gives_the_middle_frame() -> None:
    frames = np.stack([np.full((8, 9), 10 * i, np.uint16) for i in range(5)])
    frames[:, 0, 0] = 0  # each frame has a range to window over
    multi = normalise_dataset(grey_dataset(frames, bits_stored=12))
    single = normalise_dataset(grey_dataset(frames[2], bits_stored=12))
    assert isinstance(multi, NormalisedImage) and isinstance(single, NormalisedImage)
    assert multi.frame_index == 2 == choose_frame(5) and multi.number_of_frames == 5
    np.testing.assert_array_equal(multi.pixels, single.pixels)


def test_real_multi_frame_file() -> None:
    out = normalise_dataset(_read(_data_store("emri_small_jpeg_2k_lossless.dcm")))
    assert isinstance(out, NormalisedImage)
    assert out.number_of_frames == 10 and out.frame_index == 5


def test_float_pixel_data() -> None:
    ds = grey_dataset(np.zeros((4, 4), np.uint16))
    del ds.PixelData
    ds.BitsAllocated, ds.BitsStored = 32, 32
    del ds.HighBit, ds.PixelRepresentation
    values = np.linspace(-1, 1, 6 * 5, dtype="<f4").reshape(6, 5)
    ds.Rows, ds.Columns = values.shape
    ds.FloatPixelData = values.tobytes()
    out = normalise_dataset(ds)
    assert isinstance(out, NormalisedImage), str(out)
    assert out.pixels.shape == (6, 5, 3)
    assert out.pixels[0, 0, 0] == 0 and out.pixels[-1, -1, 0] == 255


@pytest.mark.parametrize("signed,bits,shape", [(True, 16, (7, 5)), (False, 8, (3, 11)),
                                               (True, 8, (1, 1)), (False, 12, (13, 2))])
def test_bit_depths_signs_and_odd_sizes(signed: bool, bits: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    stored = rng.integers(lo, hi, shape)
    out = normalise_dataset(grey_dataset(stored, signed=signed, bits_stored=bits))
    assert isinstance(out, NormalisedImage) and out.pixels.shape == (*shape, 3)


def test_constant_image_is_black_not_an_error() -> None:
    out = normalise_dataset(grey_dataset(np.full((5, 5), 7, np.uint16)))
    assert isinstance(out, NormalisedImage) and out.pixels.max() == 0


def test_voi_lut_sequence_is_used() -> None:
    out = normalise_dataset(_read(_data_store("vlut_04.dcm")))
    assert isinstance(out, NormalisedImage) and out.voi_source is VoiSourceValues.VOI_LUT
    assert out.pixels.min() < 30 and out.pixels.max() > 200


def test_histogram_percentiles_equal_numpys() -> None:
    from indexer.voi import _percentiles

    rng = np.random.default_rng(5)
    data = rng.integers(-50, 300, 10_001)
    values = np.arange(-50, 300, dtype=np.float64)
    counts = np.bincount(data + 50, minlength=350)
    got = _percentiles(values, counts, (0.5, 99.5))
    np.testing.assert_allclose(got, np.percentile(data, (0.5, 99.5)))


def test_grey_shrink_equals_colour_shrink() -> None:
    from indexer.stages import shrink

    rng = np.random.default_rng(6)
    grey = np.repeat(rng.integers(0, 255, (300, 500, 1), dtype=np.uint8), 3, axis=2)
    a, b = shrink(grey, 64, grey=True), shrink(grey, 64)
    assert a.shape == b.shape == (64, 107, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert shrink(grey[:50, :50], 64) is not None and shrink(grey[:50, :50], 64).shape == (50, 50, 3)
