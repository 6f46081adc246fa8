"""12-bit JPEG Extended (Process 2 & 4): pydicom's own ``JPEG-lossy.dcm``, whose scan header
libjpeg refuses, decodes through GDCM and normalises; its conformant twin
``JPGExtended.dcm`` (same pixels, fixed header) is the reference."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGExtended12Bit

from indexer import jpeg_extended
from indexer.normalise import NormalisedImage, SkipReason, SkipReasonValues, normalise_dataset
from tests.indexer._dicom import PYDICOM_FILES

BAD_HEADER = PYDICOM_FILES / "JPEG-lossy.dcm"
FIXED = PYDICOM_FILES / "JPGExtended.dcm"


def _read(path):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def test_libjpeg_alone_refuses_the_file() -> None:
    """Without GDCM the file is undecodable: what the plugin is for."""
    from pydicom.pixels import get_decoder

    ds = _read(BAD_HEADER)
    assert ds.file_meta.TransferSyntaxUID == JPEGExtended12Bit and ds.BitsStored == 12
    with pytest.raises(RuntimeError, match="scan stop must be 63"):
        get_decoder(JPEGExtended12Bit).as_array(ds, decoding_plugin="pylibjpeg")


def test_the_bad_header_file_decodes_like_its_fixed_twin() -> None:
    assert jpeg_extended.register()
    ds = _read(BAD_HEADER)
    pixels = ds.pixel_array  # pydicom's own pipeline, GDCM as the last plugin
    reference = _read(FIXED).pixel_array  # libjpeg decodes the conformant stream
    assert pixels.shape == reference.shape == (1024, 256) and pixels.dtype == np.uint16
    assert int(pixels.max()) < 2**12
    # two IJG-derived decoders of the same stream: equal up to IDCT rounding
    assert int(np.abs(pixels.astype(np.int32) - reference).max()) <= 1
    assert float(np.mean(pixels != reference)) < 0.05


def test_it_normalises_to_a_picture() -> None:
    result = normalise_dataset(_read(BAD_HEADER))
    assert isinstance(result, NormalisedImage), str(result)
    assert result.pixels.shape == (1024, 256, 3) and result.pixels.dtype == np.uint8
    assert result.pixels.max() > result.pixels.min()
    twin = normalise_dataset(_read(FIXED))
    assert isinstance(twin, NormalisedImage)
    diff = np.abs(result.pixels.astype(np.int16) - twin.pixels)
    assert float(diff.mean()) < 1.0


def test_a_truncated_stream_is_a_clear_reason_not_a_crash() -> None:
    from pydicom.encaps import encapsulate, generate_frames

    ds = _read(BAD_HEADER)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    result = normalise_dataset(ds)
    assert isinstance(result, SkipReason)
    assert result.code is SkipReasonValues.UNDECODABLE
    assert "GDCM could not decode" in result.detail


def test_eight_bit_frames_are_left_to_pydicoms_plugins() -> None:
    class Runner:
        bits_stored = 8

    with pytest.raises(ValueError, match="8-bit"):
        jpeg_extended.decode_frame(b"", Runner())
