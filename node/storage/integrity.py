"""Is a received instance whole and readable? Checked before it is stored, so that a
success answer never covers a data set the indexer (or a viewer) cannot read.

Three checks, none of which decodes a pixel:

- **structure** (PS3.5 section 7): every element's value lies inside the data set;
  sequences and items of undefined length end with their delimiters; encapsulated pixel
  data (PS3.5 A.4) is a run of complete fragment items ending with the sequence
  delimiter; the data set ends exactly after its last element. Values are skipped by
  their length, never parsed (a deflated data set is inflated first);
- **the attributes the node reads** (the catalogue's and the Image Pixel module's) can
  be decoded with the VR they were sent with;
- **native pixel data is long enough** (PS3.3 C.7.6.3, PS3.5 8.1.1): Rows × Columns ×
  Samples per Pixel × Bits Allocated / 8 × Number of Frames bytes (bit-packed when Bits
  Allocated is 1; two thirds of that for YBR_FULL_422). Longer is accepted (trailing
  padding is common and harmless).

A failure raises :class:`~node.errors.InvalidInstance` whose message starts with what
is wrong (a DIMSE Error Comment keeps 64 characters); it names tags and byte counts,
never a value (values may be patient data). Broken structure answers 0xC210 (cannot
understand); an Image Pixel module that disagrees with the pixel data answers 0xA900
(data set does not match SOP class).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRBigEndian, ImplicitVRLittleEndian

from node.errors import InvalidInstance

__all__ = ["CATALOGUED_KEYWORDS", "PixelDataElement", "check_instance", "data_set_offset"]

#: the attributes the catalogue reads (node.storage.ingest) beyond the four UIDs
CATALOGUED_KEYWORDS = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
    "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined", "SeriesDate",
    "SeriesTime", "InstanceNumber",
)

_STATUS_STRUCTURE = 0xC210
_STATUS_PIXEL_MODULE = 0xA900

_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_FLOAT_PIXEL_DATA = 0x7FE00008
_DOUBLE_PIXEL_DATA = 0x7FE00009
_PIXEL_TAGS = (_PIXEL_DATA, _FLOAT_PIXEL_DATA, _DOUBLE_PIXEL_DATA)
#: explicit VRs whose length field has 4 bytes (after 2 reserved ones), PS3.5 7.1.2
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC",
                       b"UN", b"UR", b"UT", b"UV"})
_MAX_DEPTH = 64
#: a deflated data set may inflate to at most this much
_MAX_INFLATED = 4 * 1024**3
_PREAMBLE = 132  # 128-byte preamble and "DICM"
_TRANSFER_SYNTAX = 0x00020010


class _Broken(Exception):
    """The structure walk stops: the message says where and what."""


@dataclass(frozen=True, slots=True)
class PixelDataElement:
    """Where the top-level pixel data element was found."""

    tag: int
    length: int  #: bytes of value (defined length), or the sum of the fragments
    encapsulated: bool  #: undefined length: a sequence of fragment items


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _name(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    return f"{keyword} {_tag_text(tag)}" if keyword else _tag_text(tag)


def _is_sequence(tag: int) -> bool:
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


class _Walker:
    """Walks the elements of one data set (PS3.5 7.1, 7.5) without reading values."""

    def __init__(self, buf: bytes | memoryview, *, implicit: bool, little: bool) -> None:
        self.buf = buf
        self.implicit = implicit
        self.endian = "<" if little else ">"
        self.pixel_data: PixelDataElement | None = None

    def _unpack(self, fmt: str, pos: int, end: int, what: str) -> tuple[int, ...]:
        size = struct.calcsize(self.endian + fmt)
        if pos + size > end:
            raise _Broken(f"{what} cut short at byte {pos}: {end - pos} of {size} bytes")
        return struct.unpack_from(self.endian + fmt, self.buf, pos)

    def data_set(self, pos: int, end: int, *, depth: int, until_delimiter: bool) -> int:
        """Walk elements from ``pos``; return the position after the last one (after the
        item delimiter when ``until_delimiter``)."""
        if depth > _MAX_DEPTH:
            raise _Broken(f"sequences nested deeper than {_MAX_DEPTH} levels")
        while pos < end:
            if end - pos < 8:
                raise _Broken(f"{end - pos} stray bytes after the last element")
            group, element = self._unpack("HH", pos, end, "an element header")
            tag = group << 16 | element
            if tag == _ITEM_DELIMITER:
                if not until_delimiter:
                    raise _Broken(f"an item delimiter outside an item at byte {pos}")
                return pos + 8
            vr, length, pos = self._header(tag, pos, end)
            if length == _UNDEFINED:
                pos = self._undefined_length(tag, vr, pos, end, depth=depth)
                continue
            if pos + length > end:
                raise _Broken(f"the data set ends inside {_name(tag)}: "
                              f"{end - pos} of {length} bytes")
            if vr == b"SQ" or (vr is None and _is_sequence(tag)):
                self._items(tag, pos, pos + length, depth=depth + 1)
            elif depth == 0 and tag in _PIXEL_TAGS:
                self.pixel_data = PixelDataElement(tag, length, encapsulated=False)
            pos += length
        if until_delimiter:
            raise _Broken("an item of undefined length has no item delimiter")
        return pos

    def _header(self, tag: int, pos: int, end: int) -> tuple[bytes | None, int, int]:
        """(VR or None, length, value position) of the element at ``pos``."""
        if self.implicit or tag >> 16 == 0xFFFE:
            (length,) = self._unpack("L", pos + 4, end, f"the header of {_name(tag)}")
            return None, length, pos + 8
        vr = bytes(self.buf[pos + 4: pos + 6])
        if vr in _LONG_VRS:
            (length,) = self._unpack("L", pos + 8, end, f"the header of {_name(tag)}")
            return vr, length, pos + 12
        if len(vr) == 2 and vr.isalpha() and vr.isupper():
            (length,) = self._unpack("H", pos + 6, end, f"the header of {_name(tag)}")
            return vr, length, pos + 8
        # not a VR: a writer switched to implicit VR here (pydicom reads these too)
        (length,) = self._unpack("L", pos + 4, end, f"the header of {_name(tag)}")
        return None, length, pos + 8

    def _undefined_length(self, tag: int, vr: bytes | None, pos: int, end: int, *,
                          depth: int) -> int:
        if tag in _PIXEL_TAGS and vr != b"SQ":
            if depth > 0 or tag != _PIXEL_DATA:
                raise _Broken(f"{_name(tag)} has an undefined length here")
            return self._fragments(pos, end)
        if vr == b"UN":  # PS3.5 6.2.2: an undefined-length UN is an implicit VR sequence
            saved = self.implicit, self.endian
            self.implicit, self.endian = True, "<"
            try:
                return self._items(tag, pos, end, depth=depth + 1, until_delimiter=True)
            finally:
                self.implicit, self.endian = saved
        if vr not in (None, b"SQ"):
            raise _Broken(f"{_name(tag)} has an undefined length but is no sequence")
        return self._items(tag, pos, end, depth=depth + 1, until_delimiter=True)

    def _items(self, tag: int, pos: int, end: int, *, depth: int,
               until_delimiter: bool = False) -> int:
        """Walk a sequence's items (PS3.5 7.5.1); return the position after it."""
        while pos < end:
            item_tag_parts = self._unpack("HHL", pos, end, f"an item of {_name(tag)}")
            item_tag = item_tag_parts[0] << 16 | item_tag_parts[1]
            length = item_tag_parts[2]
            if item_tag == _SEQUENCE_DELIMITER:
                if not until_delimiter:
                    raise _Broken(f"a sequence delimiter inside {_name(tag)} of defined length")
                return pos + 8
            if item_tag != _ITEM:
                raise _Broken(f"{_name(tag)} holds {_tag_text(item_tag)} where an item "
                              "should be")
            pos += 8
            if length == _UNDEFINED:
                pos = self.data_set(pos, end, depth=depth, until_delimiter=True)
                continue
            if pos + length > end:
                raise _Broken(f"the data set ends inside an item of {_name(tag)}: "
                              f"{end - pos} of {length} bytes")
            self.data_set(pos, pos + length, depth=depth, until_delimiter=False)
            pos += length
        if until_delimiter:
            raise _Broken(f"the data set ends inside {_name(tag)}: no sequence delimiter")
        return pos

    def _fragments(self, pos: int, end: int) -> int:
        """Encapsulated pixel data (PS3.5 A.4): the offset table and fragment items, each
        complete, then the sequence delimiter."""
        total = 0
        while True:
            parts = self._unpack("HHL", pos, end, "a fragment of PixelData (7FE0,0010)")
            item_tag, length = parts[0] << 16 | parts[1], parts[2]
            if item_tag == _SEQUENCE_DELIMITER:
                self.pixel_data = PixelDataElement(_PIXEL_DATA, total, encapsulated=True)
                return pos + 8
            if item_tag != _ITEM or length == _UNDEFINED:
                raise _Broken(f"PixelData (7FE0,0010) holds {_tag_text(item_tag)} where a "
                              "fragment should be")
            pos += 8
            if pos + length > end:
                raise _Broken(f"PixelData (7FE0,0010) cut short: a fragment holds "
                              f"{end - pos} of {length} bytes")
            pos += length
            total += length


def data_set_offset(data: bytes) -> tuple[int, UID]:
    """Where the data set starts in a Part 10 stream (after the preamble, "DICM" and the
    file meta group (0002,eeee), always explicit VR little endian), and its transfer
    syntax (implicit VR little endian when the meta names none)."""
    if data[128:132] != b"DICM":
        raise InvalidInstance("the data set cannot be decoded: no DICM prefix (not Part 10)")
    walker = _Walker(data, implicit=False, little=True)
    pos, syntax = _PREAMBLE, ImplicitVRLittleEndian
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        tag = struct.unpack_from("<H", data, pos + 2)[0] | 0x00020000
        try:
            _, length, value = walker._header(tag, pos, len(data))
        except _Broken as exc:
            raise InvalidInstance(f"the file meta information is broken: {exc}") from None
        if length == _UNDEFINED or value + length > len(data):
            raise InvalidInstance("the file meta information is cut short")
        if tag == _TRANSFER_SYNTAX:
            raw = bytes(data[value: value + length]).rstrip(b"\x00 ")
            text = raw.decode("ascii", "replace")
            syntax = UID(text) if text else ImplicitVRLittleEndian
        pos = value + length
    return pos, syntax


def _walk(data: bytes) -> tuple[PixelDataElement | None, UID]:
    start, syntax = data_set_offset(data)
    body: bytes | memoryview = memoryview(data)[start:]
    if syntax.is_deflated:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, _MAX_INFLATED)
        except zlib.error:
            raise InvalidInstance("the deflated data set cannot be inflated",
                                  status=_STATUS_STRUCTURE) from None
        if inflater.unconsumed_tail:
            raise InvalidInstance("the deflated data set inflates to more than 4 GiB",
                                  status=_STATUS_STRUCTURE)
        if not inflater.eof:
            raise InvalidInstance("the deflated data set is cut short",
                                  status=_STATUS_STRUCTURE)
    known = syntax.is_transfer_syntax
    implicit = syntax == ImplicitVRLittleEndian
    little = syntax != ExplicitVRBigEndian
    walker = _Walker(body, implicit=implicit if known else False, little=little)
    try:
        walker.data_set(0, len(body), depth=0, until_delimiter=False)
    except _Broken as exc:
        raise InvalidInstance(str(exc), status=_STATUS_STRUCTURE) from None
    return walker.pixel_data, syntax


def _decoded(ds: Dataset, keyword: str) -> Any:
    """The attribute's value; :class:`InvalidInstance` when it cannot be decoded."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - pydicom raises assorted errors on a value not its VR
        raise InvalidInstance(f"{keyword} cannot be decoded as {_vr(ds, keyword)}",
                              status=_STATUS_STRUCTURE) from None


def _vr(ds: Dataset, keyword: str) -> str:
    """The VR an element was sent with, read without decoding its value."""
    try:
        return str(ds.get_item(keyword).VR)
    except Exception:  # noqa: BLE001 - only for the message
        return "its VR"


def _positive(ds: Dataset, keyword: str, *, default: int | None = None) -> int:
    value = _decoded(ds, keyword)
    if value is None or value == "":
        if default is not None:
            return default
        raise InvalidInstance(f"{keyword} is missing; the pixel data cannot be read",
                              status=_STATUS_PIXEL_MODULE)
    if isinstance(value, Sequence | bytes | list) or not str(value).strip().isdigit() \
            or int(value) < 1:
        raise InvalidInstance(f"{keyword} is not a positive number (VR {_vr(ds, keyword)})",
                              status=_STATUS_PIXEL_MODULE)
    return int(value)


def _expected_bytes(ds: Dataset, pixels: PixelDataElement) -> int:
    rows, columns = _positive(ds, "Rows"), _positive(ds, "Columns")
    samples = _positive(ds, "SamplesPerPixel", default=1)
    frames = _positive(ds, "NumberOfFrames", default=1)
    bits = {_FLOAT_PIXEL_DATA: 32, _DOUBLE_PIXEL_DATA: 64}.get(pixels.tag) \
        or _positive(ds, "BitsAllocated")
    count = rows * columns * samples * frames
    if bits == 1:
        return (count + 7) // 8
    size = count * (bits // 8)
    if str(_decoded(ds, "PhotometricInterpretation") or "").strip() == "YBR_FULL_422":
        size = size // 3 * 2
    return size


def check_instance(data: bytes, ds: Dataset) -> None:
    """Raise :class:`InvalidInstance` unless the Part 10 stream ``data`` (whose header
    pydicom decoded as ``ds``) is whole, its read attributes decode, and its native pixel
    data is as long as its Image Pixel module says."""
    pixels, syntax = _walk(data)
    for keyword in CATALOGUED_KEYWORDS:
        _decoded(ds, keyword)
    if pixels is None:
        return
    expected = _expected_bytes(ds, pixels)
    if pixels.encapsulated:
        if syntax.is_transfer_syntax and not syntax.is_encapsulated:
            raise InvalidInstance(f"PixelData is encapsulated but {syntax.name} is native",
                                  status=_STATUS_PIXEL_MODULE)
        return  # compressed: not decoded on the network path
    if pixels.length < expected:
        raise InvalidInstance(
            f"{_name(pixels.tag).split(' ')[0]} holds {pixels.length} bytes; the image "
            f"needs {expected} (rows x columns x samples x bits x frames)",
            status=_STATUS_PIXEL_MODULE,
        )
