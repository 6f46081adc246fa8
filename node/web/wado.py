"""WADO-RS (PS3.18 §10.4): retrieve studies, series and instances as stored.

- ``…/studies/{s}[/series/{se}[/instances/{i}]]``: ``multipart/related;
  type="application/dicom"``, the bytes exactly as received (no transcoding: ask with
  ``transfer-syntax=*`` or none);
- ``…/metadata`` (study, series, instance): ``application/dicom+json``, bulk data
  (pixel data, large binary values) as ``BulkDataURI``;
- ``…/instances/{i}/bulk/{tag}``: one top-level bulk data value (octet-stream);
- ``…/instances/{i}/frames/{1,2,…}``: uncompressed frames, ``multipart/related;
  type="application/octet-stream"``;
- ``…/instances/{i}[/frames/{n}]/rendered`` and ``…/rendered`` of a study or series (its
  representative image): PNG or JPEG (``Accept`` or ``accept=``), with
  ``window=center,width[,linear|linear-exact|sigmoid]``, ``viewport=w,h`` (fitted, aspect
  kept) and ``quality=1..100``;
- ``…/thumbnail`` (study, series, instance): the same, fitted in 128×128 by default.

Unknown UIDs are 404 problems; bad parameters 400; media types the node cannot produce 406.
"""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydicom.dataelem import DataElement
from pydicom.tag import Tag
from pydicom.uid import UID

from node.storage.query import InstanceFile, instance_files
from node.web.problems import Problem
from node.web.qido import DICOM_JSON, dicomweb_base, services_of

__all__ = ["render_frame", "router"]

router = APIRouter(tags=["WADO-RS"])

_CHUNK = 1 << 20
_THUMBNAIL_SIZE = 128
_MAX_VIEWPORT = 4096
_RENDERED_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


# --------------------------------------------------------------------------- lookups


def _files(request: Request, study: str, series: str | None = None,
           instance: str | None = None) -> list[InstanceFile]:
    files = instance_files(services_of(request).connections.get(), study_instance_uid=study,
                           series_instance_uid=series, sop_instance_uid=instance)
    if not files:
        if instance is not None:
            what = f"instance {instance[:64]} of series {str(series)[:64]}"
        elif series is not None:
            what = f"series {series[:64]}"
        else:
            what = "study"
        raise Problem(404, f"no {what} of study {study[:64]} is stored on this node"
                      if what != "study" else f"no study {study[:64]} is stored on this node")
    return files


def _path(request: Request, f: InstanceFile) -> Path:
    return Path(services_of(request).ingest.data_dir) / f.path


def _instance_url(request: Request, f: InstanceFile) -> str:
    return (f"{dicomweb_base(request)}/studies/{f.study_instance_uid}/series/"
            f"{f.series_instance_uid}/instances/{f.sop_instance_uid}")


# --------------------------------------------------------------------------- media types


@dataclass(frozen=True, slots=True)
class _MediaRange:
    type: str
    params: dict[str, str]


def _accept(request: Request) -> list[_MediaRange]:
    ranges = []
    for item in request.headers.get("accept", "").split(","):
        if not item.strip():
            continue
        media, *raw = (p.strip() for p in item.split(";"))
        params = {}
        for p in raw:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        ranges.append(_MediaRange(media.lower(), params))
    return ranges


def _check_multipart(request: Request, part_type: str, *, stored_syntaxes: set[str]) -> None:
    """406 unless the Accept header allows multipart/related with ``part_type``."""
    ranges = _accept(request)
    if not ranges:
        return
    for r in ranges:
        if r.type in ("*/*", "multipart/*") or (
            r.type == "multipart/related" and r.params.get("type", part_type) in (
                part_type, "*/*", part_type.split("/")[0] + "/*")):
            syntax = r.params.get("transfer-syntax", "*")
            if part_type == "application/dicom" and syntax != "*" \
                    and stored_syntaxes - {syntax}:
                continue
            return
        if r.type == part_type and part_type == "application/dicom":
            return  # a plain application/dicom: answered multipart all the same
    if part_type == "application/dicom":
        stored = ", ".join(sorted(stored_syntaxes))
        raise Problem(406, 'this node returns instances as stored: ask with Accept: '
                           'multipart/related; type="application/dicom"; transfer-syntax=* '
                           f"(stored transfer syntaxes: {stored})")
    raise Problem(406, f'this resource is sent as multipart/related; type="{part_type}": '
                       "ask with that Accept header (or */*)")


def _multipart(parts: Iterator[tuple[str, Iterator[bytes] | bytes]], part_type: str,
               ) -> StreamingResponse:
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        for content_type, content in parts:
            yield (f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").encode()
            if isinstance(content, bytes):
                yield content
            else:
                yield from content
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return StreamingResponse(body(), media_type=media)


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _retrieve(request: Request, files: list[InstanceFile]) -> StreamingResponse:
    syntaxes = {f.transfer_syntax_uid or "1.2.840.10008.1.2.1" for f in files}
    _check_multipart(request, "application/dicom", stored_syntaxes=syntaxes)
    paths = [_path(request, f) for f in files]

    def parts() -> Iterator[tuple[str, Iterator[bytes]]]:
        for f, path in zip(files, paths, strict=True):
            syntax = f.transfer_syntax_uid or "1.2.840.10008.1.2.1"
            yield f"application/dicom; transfer-syntax={syntax}", _read_chunks(path)

    return _multipart(parts(), "application/dicom")


@router.get("/studies/{study}", summary="Retrieve a study (as stored)")
def retrieve_study(study: str, request: Request) -> StreamingResponse:
    return _retrieve(request, _files(request, study))


@router.get("/studies/{study}/series/{series}", summary="Retrieve a series (as stored)")
def retrieve_series(study: str, series: str, request: Request) -> StreamingResponse:
    return _retrieve(request, _files(request, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}",
            summary="Retrieve an instance (as stored)")
def retrieve_instance(study: str, series: str, instance: str,
                      request: Request) -> StreamingResponse:
    return _retrieve(request, _files(request, study, series, instance))


# --------------------------------------------------------------------------- metadata


def _metadata(request: Request, files: list[InstanceFile]) -> JSONResponse:
    body = []
    for f in files:
        url = _instance_url(request, f)
        ds = pydicom.dcmread(_path(request, f), stop_before_pixels=True)

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
    return JSONResponse(body, media_type=DICOM_JSON)


@router.get("/studies/{study}/metadata", summary="Metadata of a study's instances")
def study_metadata(study: str, request: Request) -> JSONResponse:
    return _metadata(request, _files(request, study))


@router.get("/studies/{study}/series/{series}/metadata",
            summary="Metadata of a series' instances")
def series_metadata(study: str, series: str, request: Request) -> JSONResponse:
    return _metadata(request, _files(request, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata",
            summary="Metadata of an instance")
def instance_metadata(study: str, series: str, instance: str, request: Request) -> JSONResponse:
    return _metadata(request, _files(request, study, series, instance))


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulk/{tag}",
            summary="One bulk data value of an instance")
def instance_bulk(study: str, series: str, instance: str, tag: str,
                  request: Request) -> StreamingResponse:
    (f,) = _files(request, study, series, instance)
    try:
        key = Tag(int(tag, 16))
    except ValueError as exc:
        raise Problem(400, f"bulk data tag '{tag[:16]}' is not a tag: use 8 hex digits, "
                           "e.g. 7FE00010") from exc
    ds = pydicom.dcmread(_path(request, f))
    if key not in ds:
        raise Problem(404, f"instance {instance[:64]} has no element {tag.upper()}")
    value = ds[key].value
    if not isinstance(value, bytes):
        raise Problem(404, f"element {tag.upper()} is not bulk data: read it in the metadata")
    data = value
    _check_multipart(request, "application/octet-stream", stored_syntaxes=set())
    return _multipart(iter([("application/octet-stream", data)]), "application/octet-stream")


# --------------------------------------------------------------------------- frames


def _frame_numbers(text: str, frames: int) -> list[int]:
    numbers = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise Problem(400, f"frame list '{text[:64]}' is not valid: use frame numbers "
                               "from 1, separated by commas (e.g. 1,3)")
        if int(item) > frames:
            raise Problem(404, f"frame {item} does not exist: the instance has {frames} "
                               f"frame{'s' if frames != 1 else ''}")
        numbers.append(int(item))
    return numbers


def _native_frame(path: Path, f: InstanceFile, index: int) -> bytes:
    """Frame ``index`` (0-based) uncompressed, little endian, as in Explicit VR LE."""
    if f.transfer_syntax_uid in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
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
def retrieve_frames(study: str, series: str, instance: str, frames: str,
                    request: Request) -> StreamingResponse:
    (f,) = _files(request, study, series, instance)
    if not f.rows:
        raise Problem(404, f"instance {instance[:64]} has no pixel data")
    numbers = _frame_numbers(frames, f.number_of_frames or 1)
    _check_multipart(request, "application/octet-stream", stored_syntaxes=set())
    path = _path(request, f)
    try:
        data = [_native_frame(path, f, n - 1) for n in numbers]
    except Exception as exc:
        raise Problem(406, "the frames cannot be decoded on this node "
                           f"({UID(f.transfer_syntax_uid or '').name or 'unknown syntax'}): "
                           "retrieve the instance as stored instead") from exc
    return _multipart(iter([("application/octet-stream", d) for d in data]),
                      "application/octet-stream")


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True, slots=True)
class _RenderOptions:
    media_type: str
    window: tuple[float, float, str] | None
    viewport: tuple[int, int] | None
    quality: int


def _render_options(request: Request, *, default_viewport: tuple[int, int] | None,
                    ) -> _RenderOptions:
    params = request.query_params
    media_type = None
    wanted = [params["accept"]] if "accept" in params else [
        r.type for r in _accept(request)] or ["*/*"]
    for choice in wanted:
        choice = choice.split(";")[0].strip().lower()
        if choice in _RENDERED_TYPES:
            media_type = choice
            break
        if choice in ("*/*", "image/*"):
            media_type = "image/jpeg"
            break
    if media_type is None:
        raise Problem(406, f"rendered images are image/jpeg or image/png, not "
                           f"{', '.join(wanted)[:80]}: ask with Accept or accept=")
    window = None
    if "window" in params:
        parts = [p.strip() for p in params["window"].split(",")]
        try:
            center, width = float(parts[0]), float(parts[1])
            function = (parts[2] if len(parts) > 2 else "linear").lower()
            if width <= 0 or function not in ("linear", "linear-exact", "sigmoid") \
                    or len(parts) > 3 or not (math.isfinite(center) and math.isfinite(width)):
                raise ValueError
        except (ValueError, IndexError) as exc:
            raise Problem(400, f"window '{params['window'][:64]}' is not valid: use "
                               "window=center,width[,linear|linear-exact|sigmoid] with a "
                               "width above 0") from exc
        window = (center, width, function)
    viewport = default_viewport
    if "viewport" in params:
        parts = [p.strip() for p in params["viewport"].split(",")]
        try:
            vw, vh = int(parts[0]), int(parts[1])
            if not (0 < vw <= _MAX_VIEWPORT and 0 < vh <= _MAX_VIEWPORT):
                raise ValueError
        except (ValueError, IndexError) as exc:
            raise Problem(400, f"viewport '{params['viewport'][:64]}' is not valid: use "
                               f"viewport=width,height in pixels (1 to {_MAX_VIEWPORT})") from exc
        viewport = (vw, vh)
    quality = 90
    if "quality" in params:
        text = params["quality"]
        if not text.isdigit() or not 1 <= int(text) <= 100:
            raise Problem(400, f"quality '{text[:16]}' is not valid: use an integer "
                               "from 1 to 100")
        quality = int(text)
    return _RenderOptions(media_type, window, viewport, quality)


def _window(x: npt.NDArray[np.float64], center: float, width: float,
            function: str) -> npt.NDArray[np.float64]:
    """PS3.3 C.11.2.1.2/3 to 0..1."""
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "linear-exact":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width <= 1:
        return (x > center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0]
    return float(value)


def render_frame(path: Path, index: int, window: tuple[float, float, str] | None,
                 ) -> npt.NDArray[np.uint8]:
    """Frame ``index`` of a stored file as 8-bit grey (H×W) or RGB (H×W×3): modality LUT,
    then the given window, else the file's first window or VOI LUT, else min–max;
    MONOCHROME1 inverted."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
    from pydicom.pixels.utils import pixel_array

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    arr = pixel_array(str(path), index=index)
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        if arr.dtype != np.uint8:
            top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
            arr = np.clip(arr.astype(np.float64) / top * 255.0, 0, 255)
        return arr.astype(np.uint8)
    x = apply_modality_lut(arr, ds).astype(np.float64)
    if window is not None:
        unit = _window(x, *window)
    elif "WindowCenter" in ds and "WindowWidth" in ds and _first(ds.WindowWidth) > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR")).lower().replace("_", "-")
        unit = _window(x, _first(ds.WindowCenter), _first(ds.WindowWidth),
                       function if function in ("linear-exact", "sigmoid") else "linear")
    else:
        if "VOILUTSequence" in ds:
            x = apply_voi_lut(arr, ds).astype(np.float64)
        low, high = (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)
        unit = (x - low) / (high - low) if high > low else np.zeros_like(x)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        unit = 1.0 - unit
    return np.asarray(np.round(unit * 255.0), dtype=np.uint8)


def _encode(pixels: npt.NDArray[np.uint8], options: _RenderOptions) -> bytes:
    from PIL import Image

    image = Image.fromarray(pixels)
    if options.viewport is not None:  # fit inside the viewport, keeping the aspect ratio
        scale = min(options.viewport[0] / image.width, options.viewport[1] / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS if scale < 1
                                 else Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    if options.media_type == "image/png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=options.quality)
    return buffer.getvalue()


def _rendered(request: Request, f: InstanceFile, frame: int,
              options: _RenderOptions) -> Response:
    if not f.rows:
        raise Problem(404, f"instance {f.sop_instance_uid} has no pixel data to render")
    frames = f.number_of_frames or 1
    if not 1 <= frame <= frames:
        raise Problem(404, f"frame {frame} does not exist: the instance has {frames} "
                           f"frame{'s' if frames != 1 else ''}")
    try:
        pixels = render_frame(_path(request, f), frame - 1, options.window)
    except Exception as exc:
        raise Problem(406, "the pixel data cannot be decoded on this node "
                           f"({UID(f.transfer_syntax_uid or '').name or 'unknown syntax'}): "
                           "retrieve the instance as stored instead") from exc
    return Response(_encode(pixels, options), media_type=options.media_type)


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered",
            summary="An instance rendered as JPEG or PNG (its first frame)")
def instance_rendered(study: str, series: str, instance: str, request: Request) -> Response:
    options = _render_options(request, default_viewport=None)
    (f,) = _files(request, study, series, instance)
    return _rendered(request, f, 1, options)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
            summary="One frame rendered as JPEG or PNG")
def frame_rendered(study: str, series: str, instance: str, frame: str,
                   request: Request) -> Response:
    options = _render_options(request, default_viewport=None)
    (f,) = _files(request, study, series, instance)
    if not frame.isdigit():
        raise Problem(400, f"frame '{frame[:16]}' is not a frame number: use one number "
                           "from 1 to render")
    return _rendered(request, f, int(frame), options)


@router.get("/studies/{study}/rendered",
            summary="The study's representative image rendered as JPEG or PNG")
def study_rendered(study: str, request: Request) -> Response:
    options = _render_options(request, default_viewport=None)
    f = _representative(_files(request, study))
    return _rendered(request, f, 1, options)


@router.get("/studies/{study}/series/{series}/rendered",
            summary="The series' representative image rendered as JPEG or PNG")
def series_rendered(study: str, series: str, request: Request) -> Response:
    options = _render_options(request, default_viewport=None)
    f = _representative(_files(request, study, series))
    return _rendered(request, f, 1, options)


def _representative(files: list[InstanceFile]) -> InstanceFile:
    """The middle image of the first series that has images."""
    images = [f for f in files if f.rows]
    if not images:
        raise Problem(404, "nothing here has pixel data to make a thumbnail from")
    first_series = images[0].series_instance_uid
    series = [f for f in images if f.series_instance_uid == first_series]
    return series[len(series) // 2]


def _thumbnail(request: Request, files: list[InstanceFile]) -> Response:
    options = _render_options(request, default_viewport=(_THUMBNAIL_SIZE, _THUMBNAIL_SIZE))
    f = _representative(files)
    frames = f.number_of_frames or 1
    return _rendered(request, f, frames // 2 + 1 if frames > 1 else 1, options)


@router.get("/studies/{study}/thumbnail", summary="A small picture of the study")
def study_thumbnail(study: str, request: Request) -> Response:
    return _thumbnail(request, _files(request, study))


@router.get("/studies/{study}/series/{series}/thumbnail", summary="A small picture of the series")
def series_thumbnail(study: str, series: str, request: Request) -> Response:
    return _thumbnail(request, _files(request, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            summary="A small picture of the instance")
def instance_thumbnail(study: str, series: str, instance: str, request: Request) -> Response:
    return _thumbnail(request, _files(request, study, series, instance))
