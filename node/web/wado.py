"""WADO-RS (PS3.18 §10.4): retrieve studies, series and instances as stored, their
metadata, bulk data and frames.

- ``…/studies/{s}[/series/{se}[/instances/{i}]]``: ``multipart/related;
  type="application/dicom"``, the bytes exactly as received (no transcoding: ask with
  ``transfer-syntax=*`` or none);
- ``…/metadata`` (study, series, instance): ``application/dicom+json``, bulk data
  (pixel data, large binary values) as ``BulkDataURI``;
- ``…/instances/{i}/bulk/{tag}``: one top-level bulk data value (octet-stream);
- ``…/instances/{i}/frames/{1,2,…}``: uncompressed frames, ``multipart/related;
  type="application/octet-stream"``.

Bulk data and a single frame also come as one bare ``application/octet-stream`` body
when the Accept header asks for that and no multipart answer (OHIF's
``singlepart: 'bulkdata'``).

Rendered images and thumbnails are :mod:`node.web.rendered`. Unknown UIDs are 404
problems; bad parameters 400; media types the node cannot produce 406.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydicom.dataelem import DataElement
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from node.errors import BadRequest, NotAcceptable, UnknownObject
from node.runtime import Services
from node.storage.query import InstanceFile
from node.web._deps import DICOM, OCTET_STREAM, BaseUrlDep, ServicesDep
from node.web._dicom_json import DicomJSONResponse
from node.web._wado import check_multipart, multipart, single_part, stored_files, stored_path

__all__ = ["router"]

router = APIRouter(tags=["WADO-RS"])

_CHUNK = 1 << 20
#: native (uncompressed) pixel data: its OW/OB follows BitsAllocated
_UNCOMPRESSED = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
#: frames are cut straight from the stored pixel data
_LITTLE_ENDIAN_NATIVE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian}


# --------------------------------------------------------------------------- instances


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _retrieve(request: Request, services: Services,
              files: list[InstanceFile]) -> StreamingResponse:
    syntaxes = {f.transfer_syntax_uid or ExplicitVRLittleEndian for f in files}
    check_multipart(request, DICOM, stored_syntaxes=syntaxes)
    paths = [stored_path(services, f) for f in files]

    def parts() -> Iterator[tuple[str, Iterator[bytes]]]:
        for f, path in zip(files, paths, strict=True):
            syntax = f.transfer_syntax_uid or ExplicitVRLittleEndian
            yield f"{DICOM}; transfer-syntax={syntax}", _read_chunks(path)

    return multipart(parts(), DICOM)


@router.get("/studies/{study}", summary="Retrieve a study (as stored)")
def retrieve_study(study: str, request: Request, services: ServicesDep) -> StreamingResponse:
    return _retrieve(request, services, stored_files(services, study))


@router.get("/studies/{study}/series/{series}", summary="Retrieve a series (as stored)")
def retrieve_series(study: str, series: str, request: Request,
                    services: ServicesDep) -> StreamingResponse:
    return _retrieve(request, services, stored_files(services, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}",
            summary="Retrieve an instance (as stored)")
def retrieve_instance(study: str, series: str, instance: str, request: Request,
                      services: ServicesDep) -> StreamingResponse:
    return _retrieve(request, services, stored_files(services, study, series, instance))


# --------------------------------------------------------------------------- metadata


def _metadata(services: Services, base: str, files: list[InstanceFile]) -> Response:
    body = []
    for f in files:
        url = (f"{base}/studies/{f.study_instance_uid}/series/{f.series_instance_uid}"
               f"/instances/{f.sop_instance_uid}")
        ds = pydicom.dcmread(stored_path(services, f), stop_before_pixels=True)

        def bulk(element: DataElement, url: str = url) -> str:
            return f"{url}/bulk/{int(element.tag):08X}"

        item: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=1024,
                                               bulk_data_element_handler=bulk,
                                               suppress_invalid_tags=True)
        if f.rows:  # the pixel data was not read: point at it
            vr = "OW" if f.transfer_syntax_uid in _UNCOMPRESSED and \
                ds.get("BitsAllocated", 8) > 8 else "OB"
            item["7FE00010"] = {"vr": vr, "BulkDataURI": f"{url}/bulk/7FE00010"}
        body.append(item)
    return DicomJSONResponse(body)


@router.get("/studies/{study}/metadata", summary="Metadata of a study's instances")
def study_metadata(study: str, services: ServicesDep, base: BaseUrlDep) -> Response:
    return _metadata(services, base, stored_files(services, study))


@router.get("/studies/{study}/series/{series}/metadata",
            summary="Metadata of a series' instances")
def series_metadata(study: str, series: str, services: ServicesDep,
                    base: BaseUrlDep) -> Response:
    return _metadata(services, base, stored_files(services, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata",
            summary="Metadata of an instance")
def instance_metadata(study: str, series: str, instance: str, services: ServicesDep,
                      base: BaseUrlDep) -> Response:
    return _metadata(services, base, stored_files(services, study, series, instance))


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulk/{tag}",
            summary="One bulk data value of an instance")
def instance_bulk(study: str, series: str, instance: str, tag: str, request: Request,
                  services: ServicesDep) -> Response:
    (f,) = stored_files(services, study, series, instance)
    try:
        key = Tag(int(tag, 16))
    except ValueError as exc:
        raise BadRequest(f"bulk data tag '{tag[:16]}' is not a tag: use 8 hex digits, "
                         "e.g. 7FE00010") from exc
    ds = pydicom.dcmread(stored_path(services, f))
    if key not in ds:
        raise UnknownObject(f"instance {instance[:64]} has no element {tag.upper()}")
    value = ds[key].value
    if not isinstance(value, bytes):
        raise UnknownObject(f"element {tag.upper()} is not bulk data: read it in the metadata")
    if single_part(request, OCTET_STREAM):
        return Response(value, media_type=OCTET_STREAM)
    check_multipart(request, OCTET_STREAM, stored_syntaxes=set())
    return multipart(iter([(OCTET_STREAM, value)]), OCTET_STREAM)


# --------------------------------------------------------------------------- frames


def _frame_numbers(text: str, frames: int) -> list[int]:
    """A frame list (``1,3``) as numbers from 1; 400 when it is not one, 404 for a frame
    the instance does not have."""
    numbers = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise BadRequest(f"frame list '{text[:64]}' is not valid: use frame numbers "
                             "from 1, separated by commas (e.g. 1,3)")
        if int(item) > frames:
            raise UnknownObject(f"frame {item} does not exist: the instance has {frames} "
                                f"frame{'s' if frames != 1 else ''}")
        numbers.append(int(item))
    return numbers


def _native_frame(path: Path, f: InstanceFile, index: int) -> bytes:
    """Frame ``index`` (0-based) uncompressed, little endian, as in Explicit VR LE."""
    if f.transfer_syntax_uid in _LITTLE_ENDIAN_NATIVE:
        ds = pydicom.dcmread(path)
        bits = int(ds.get("BitsAllocated", 8))
        if bits >= 8:
            size = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
                    * bits // 8)
            data: bytes = ds.PixelData[index * size:(index + 1) * size]
            return data
    from pydicom.pixels.utils import pixel_array

    arr = pixel_array(str(path), index=index)
    return np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            summary="Uncompressed frames of an instance")
def retrieve_frames(study: str, series: str, instance: str, frames: str, request: Request,
                    services: ServicesDep) -> Response:
    (f,) = stored_files(services, study, series, instance)
    if not f.rows:
        raise UnknownObject(f"instance {instance[:64]} has no pixel data")
    numbers = _frame_numbers(frames, f.number_of_frames or 1)
    bare = single_part(request, OCTET_STREAM)
    if bare and len(numbers) > 1:
        raise NotAcceptable("several frames come as multipart/related; "
                            'type="application/octet-stream": ask with that Accept header, '
                            "or for one frame at a time")
    if not bare:
        check_multipart(request, OCTET_STREAM, stored_syntaxes=set())
    path = stored_path(services, f)
    try:
        data = [_native_frame(path, f, n - 1) for n in numbers]
    except Exception as exc:
        raise NotAcceptable("the frames cannot be decoded on this node "
                            f"({UID(f.transfer_syntax_uid or '').name or 'unknown syntax'}): "
                            "retrieve the instance as stored instead") from exc
    if bare:
        return Response(data[0], media_type=OCTET_STREAM)
    return multipart(iter([(OCTET_STREAM, d) for d in data]), OCTET_STREAM)
