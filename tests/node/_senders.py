"""Peers that send what dcmtk will not: raw data set bytes in a C-STORE (pynetdicom,
without re-encoding), the first bytes of an A-ASSOCIATE-RQ on a plain socket, and the
broken variants of real pydicom test files that the DIMSE tests send."""

from __future__ import annotations

import io
import socket
import struct
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

__all__ = [
    "associate_rq",
    "body_of",
    "hostile_socket",
    "pixel_data_offset",
    "send_raw_c_store",
    "testdata_file",
]


def testdata_file(name: str) -> Path:
    """One of pydicom's test files, shipped or from the pydicom-data package (their
    folders globbed: no download)."""
    import data_store  # type: ignore[import-not-found]  # the pydicom-data package

    folders = [Path(pydicom.__file__).parent / "data" / "test_files",
               Path(data_store.__file__).parent / "data"]
    found = sorted(p for folder in folders for p in folder.rglob(name))
    assert found, f"{name} is not among pydicom's test files"
    return found[0]


def body_of(path: Path) -> bytes:
    """The file's data set bytes, after the preamble and the file meta group."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    raw = path.read_bytes()
    fp = io.BytesIO(raw)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    return raw[fp.tell():]


def pixel_data_offset(body: bytes, *, explicit: bool = True) -> int:
    """Where the top-level (7FE0,0010) element's header starts in ``body``."""
    tag = b"\xe0\x7f\x10\x00" + (b"O" if explicit else b"")
    index = body.rfind(tag)
    assert index > 0, "no PixelData element"
    return index


def encode_body(ds: Dataset, *, implicit: bool = False) -> bytes:
    """``ds`` (without its file meta) as little endian data set bytes."""
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return out.getvalue()


def send_raw_c_store(port: int, called: str, *, sop_class: str, sop_instance: str,
                     syntax: str, body: bytes, calling: str = "RAWSCU") -> Dataset:
    """C-STORE ``body`` as it is (announced as ``sop_class``/``sop_instance`` in
    ``syntax``) over a new association; return the response's status data set."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(sop_class, [syntax])
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, "the node did not accept the association"
    try:
        context = next(c for c in assoc.accepted_contexts if c.abstract_syntax == sop_class)
        request = C_STORE()
        request.MessageID, request.Priority = 1, 2
        request.AffectedSOPClassUID = sop_class
        request.AffectedSOPInstanceUID = sop_instance
        request.DataSet = io.BytesIO(body)
        assoc._reactor_checkpoint.clear()  # as send_c_store does: we read the response
        assoc.dimse.send_msg(request, context.context_id)
        _, response = assoc.dimse.get_msg(block=True)
        assoc._reactor_checkpoint.set()
        assert response is not None, "no C-STORE response"
        status = Dataset()
        status.Status = response.Status
        if response.ErrorComment:
            status.ErrorComment = response.ErrorComment
        # the node kept the association: it still answers
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    return status


def associate_rq(called: str, calling: str = "HOSTILE") -> bytes:
    """A complete A-ASSOCIATE-RQ PDU proposing Verification."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = calling, called
    context = build_context(Verification)
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def pdu_header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, length)


def hostile_socket(port: int, first_bytes: bytes, *, source: str) -> socket.socket:
    """Connect from ``source`` (a loopback address such as 127.0.0.2: another host to
    the node), send ``first_bytes`` and keep the socket open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def mr_small(**changes: object) -> Dataset:
    """pydicom's MR_small.dcm (64 × 64, 16 bits: 8192 bytes of native pixel data,
    explicit VR little endian) with ``changes`` applied (keyword → value)."""
    ds = pydicom.dcmread(testdata_file("MR_small.dcm"))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def with_pixel_length(ds: Dataset, *, declared: int, present: int) -> bytes:
    """``ds``'s data set bytes (explicit VR LE) ending in a PixelData element whose
    length field says ``declared`` while ``present`` bytes follow (the data set is cut
    there, as a sender that stopped mid-transfer would leave it)."""
    body = encode_body(ds)
    start = pixel_data_offset(body)
    header = b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<L", declared)
    pixels = bytes(ds.PixelData)[:present]
    return body[:start] + header + pixels + b"\x00" * (present - len(pixels))


def with_vr(ds: Dataset, keyword: str, vr: bytes) -> bytes:
    """``ds``'s data set bytes (explicit VR LE) with ``keyword``'s VR bytes replaced by
    ``vr`` (both must have a 2-byte length field), its value bytes unchanged."""
    from pydicom.datadict import tag_for_keyword

    body = encode_body(ds)
    tag = tag_for_keyword(keyword)
    assert tag is not None
    needle = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + ds[keyword].VR.encode()
    index = body.find(needle)
    assert index >= 0, f"{keyword} not found in the encoded data set"
    return body[:index + 4] + vr + body[index + 6:]
