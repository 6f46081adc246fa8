"""12-bit JPEG Extended (Process 2 & 4, ``1.2.840.10008.1.2.4.51``) through GDCM.

pydicom decodes JPEG Extended with pylibjpeg (libjpeg), GDCM or Pillow. libjpeg refuses
streams whose scan header is not exactly what the sequential process prescribes (pydicom's
own ``JPEG-lossy.dcm`` has a spectral selection end of 0 instead of 63, as some old
scanners wrote it), Pillow has no 12-bit JPEG, and pydicom's GDCM plugin declines every
12-bit JPEG Extended frame outright. GDCM itself decodes such streams (its IJG 12-bit
codec tolerates the scan header), so this module is a pydicom decoder plugin that hands
12-bit JPEG Extended frames to GDCM (python-gdcm).

:func:`register` adds it to pydicom's JPEG Extended decoder, after the plugins pydicom
ships: a frame that pylibjpeg decodes is decoded as before, and GDCM is only tried when
every other plugin failed. GDCM's IJG library writes a line such as "Unsupported JPEG data
precision 12" to the process's standard error while it decodes (it tries its 8-bit codec
first); that is the library's own output, not a failure.
"""

from __future__ import annotations

import threading
from typing import Any

from pydicom import uid

__all__ = ["DECODER_DEPENDENCIES", "PLUGIN_LABEL", "decode_frame", "is_available", "register"]

PLUGIN_LABEL = "gdcm-12bit"
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("python-gdcm>=3.0.10",)}

_lock = threading.Lock()
_registered = False


def is_available(transfer_syntax: str) -> bool:
    """True when python-gdcm can be imported and ``transfer_syntax`` is JPEG Extended."""
    if transfer_syntax not in DECODER_DEPENDENCIES:
        return False
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return True


def decode_frame(src: bytes, runner: Any) -> bytes:
    """Decode one JPEG Extended frame of more than 8 bits with GDCM (pydicom's plugin
    signature: the encoded frame and pydicom's ``DecodeRunner``)."""
    import gdcm

    bits_stored = int(runner.bits_stored)
    if bits_stored <= 8:
        raise ValueError("8-bit JPEG Extended is left to pydicom's own plugins")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())

    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((int(runner.columns), int(runner.rows), 1))
    image.SetDataElement(element)
    photometric = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(photometric))
    samples = int(runner.samples_per_pixel)
    if samples > 1:
        image.SetPlanarConfiguration(int(runner.planar_configuration))
    syntax = gdcm.TransferSyntax.GetTSType(str(uid.JPEGExtended12Bit))
    image.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    image.SetPixelFormat(
        gdcm.PixelFormat(
            samples, 16, bits_stored, bits_stored - 1, int(runner.pixel_representation)
        )
    )
    buffer = image.GetBuffer()
    if buffer is None:
        raise ValueError("GDCM could not decode the JPEG Extended frame")
    # GDCM hands back char* as str: re-encode it to the original bytes
    frame: bytes = buffer.encode("utf-8", "surrogateescape")
    expected = int(runner.rows) * int(runner.columns) * samples * 2
    if len(frame) != expected:
        raise ValueError(f"GDCM returned {len(frame)} bytes for a frame of {expected}")
    return frame


def register() -> bool:
    """Add the plugin to pydicom's JPEG Extended decoder, once per process (thread-safe).

    Returns whether it is available (python-gdcm importable)."""
    global _registered
    with _lock:
        if not _registered:
            from pydicom.pixels.decoders.base import get_decoder

            decoder = get_decoder(uid.JPEGExtended12Bit)
            if PLUGIN_LABEL not in decoder.available_plugins and is_available(
                uid.JPEGExtended12Bit
            ):
                decoder.add_plugin(PLUGIN_LABEL, (__name__, "decode_frame"))
            _registered = True
        return is_available(uid.JPEGExtended12Bit)
