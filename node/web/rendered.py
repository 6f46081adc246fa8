"""WADO-RS rendered resources (PS3.18 §10.4.1.1.3, §10.7): images to look at, not to
process.

- ``…/instances/{i}[/frames/{n}]/rendered`` and ``…/rendered`` of a study or series (its
  representative image): PNG or JPEG (``Accept`` or ``accept=``), with
  ``window=center,width[,linear|linear-exact|sigmoid]``, ``viewport=w,h`` (fitted, aspect
  kept) and ``quality=1..100``;
- ``…/thumbnail`` (study, series, instance): the same, fitted in 128×128 by default.

Grey levels follow the DICOM grayscale pipeline: modality LUT, then the asked window,
else the file's first window, else its VOI LUT, else the frame's min–max; MONOCHROME1
inverted. Windows go through :func:`indexer.normalise.apply_window`, the same VOI LUT
functions the indexer embeds pictures with.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom.uid import UID

from indexer.normalise import apply_window, first_window
from node.errors import BadRequest, NotAcceptable, UnknownObject
from node.runtime import Services
from node.storage.query import InstanceFile
from node.web._deps import ServicesDep
from node.web._wado import accept_ranges, stored_files, stored_path

__all__ = ["Window", "render_frame", "router"]

router = APIRouter(tags=["WADO-RS"])

_THUMBNAIL_SIZE = 128
_MAX_VIEWPORT = 4096
_RENDERED_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
#: the ``window`` parameter's function names (PS3.18 §8.3.5.1.3) to VOI LUT Function's
_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


@dataclass(frozen=True, slots=True)
class Window:
    """A VOI window: centre, width above 0, and a VOI LUT Function (0028,1056)."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True, slots=True)
class _RenderOptions:
    media_type: str
    window: Window | None
    viewport: tuple[int, int] | None
    quality: int


def _media_type(request: Request) -> str:
    params = request.query_params
    wanted = [params["accept"]] if "accept" in params else [
        r.type for r in accept_ranges(request)] or ["*/*"]
    for choice in wanted:
        choice = choice.split(";")[0].strip().lower()
        if choice in _RENDERED_TYPES:
            return choice
        if choice in ("*/*", "image/*"):
            return "image/jpeg"
    raise NotAcceptable(f"rendered images are image/jpeg or image/png, not "
                        f"{', '.join(wanted)[:80]}: ask with Accept or accept=")


def _window(text: str) -> Window:
    parts = [p.strip() for p in text.split(",")]
    try:
        center, width = float(parts[0]), float(parts[1])
        function = (parts[2] if len(parts) > 2 else "linear").lower()
        if width <= 0 or function not in _FUNCTIONS or len(parts) > 3 \
                or not (math.isfinite(center) and math.isfinite(width)):
            raise ValueError
    except (ValueError, IndexError) as exc:
        raise BadRequest(f"window '{text[:64]}' is not valid: use "
                         "window=center,width[,linear|linear-exact|sigmoid] with a "
                         "width above 0") from exc
    return Window(center, width, _FUNCTIONS[function])


def _viewport(text: str) -> tuple[int, int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        vw, vh = int(parts[0]), int(parts[1])
        if not (0 < vw <= _MAX_VIEWPORT and 0 < vh <= _MAX_VIEWPORT):
            raise ValueError
    except (ValueError, IndexError) as exc:
        raise BadRequest(f"viewport '{text[:64]}' is not valid: use viewport=width,height "
                         f"in pixels (1 to {_MAX_VIEWPORT})") from exc
    return vw, vh


def _render_options(request: Request, *, default_viewport: tuple[int, int] | None,
                    ) -> _RenderOptions:
    params = request.query_params
    media_type = _media_type(request)
    window = _window(params["window"]) if "window" in params else None
    viewport = _viewport(params["viewport"]) if "viewport" in params else default_viewport
    quality = 90
    if "quality" in params:
        text = params["quality"]
        if not text.isdigit() or not 1 <= int(text) <= 100:
            raise BadRequest(f"quality '{text[:16]}' is not valid: use an integer "
                             "from 1 to 100")
        quality = int(text)
    return _RenderOptions(media_type, window, viewport, quality)


def render_frame(path: Path, index: int, window: Window | None) -> npt.NDArray[np.uint8]:
    """Frame ``index`` of a stored file as 8-bit grey (H×W) or RGB (H×W×3): modality LUT,
    then ``window``, else the file's first window, else its VOI LUT, else min–max;
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
    if window is None and (stored := first_window(ds)) is not None:
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
        window = Window(*stored, function if function in _FUNCTIONS.values() else "LINEAR")
    if window is not None:
        unit = apply_window(x, window.center, window.width, window.function)
    else:
        if "VOILUTSequence" in ds:
            x = apply_voi_lut(arr, ds).astype(np.float64)
        low, high = (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)
        unit = (x - low) / (high - low) if high > low else np.zeros_like(x)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        unit = 1.0 - unit
    return np.asarray(np.round(np.clip(unit, 0.0, 1.0) * 255.0), dtype=np.uint8)


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


def _rendered(services: Services, f: InstanceFile, frame: int,
              options: _RenderOptions) -> Response:
    if not f.rows:
        raise UnknownObject(f"instance {f.sop_instance_uid} has no pixel data to render")
    frames = f.number_of_frames or 1
    if not 1 <= frame <= frames:
        raise UnknownObject(f"frame {frame} does not exist: the instance has {frames} "
                            f"frame{'s' if frames != 1 else ''}")
    try:
        pixels = render_frame(stored_path(services, f), frame - 1, options.window)
    except Exception as exc:
        raise NotAcceptable("the pixel data cannot be decoded on this node "
                            f"({UID(f.transfer_syntax_uid or '').name or 'unknown syntax'}): "
                            "retrieve the instance as stored instead") from exc
    return Response(_encode(pixels, options), media_type=options.media_type)


def _representative(files: list[InstanceFile]) -> InstanceFile:
    """The middle image of the first series that has images."""
    images = [f for f in files if f.rows]
    if not images:
        raise UnknownObject("nothing here has pixel data to make a thumbnail from")
    first_series = images[0].series_instance_uid
    series = [f for f in images if f.series_instance_uid == first_series]
    return series[len(series) // 2]


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered",
            summary="An instance rendered as JPEG or PNG (its first frame)")
def instance_rendered(study: str, series: str, instance: str, request: Request,
                      services: ServicesDep) -> Response:
    options = _render_options(request, default_viewport=None)
    (f,) = stored_files(services, study, series, instance)
    return _rendered(services, f, 1, options)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
            summary="One frame rendered as JPEG or PNG")
def frame_rendered(study: str, series: str, instance: str, frame: str, request: Request,
                   services: ServicesDep) -> Response:
    options = _render_options(request, default_viewport=None)
    (f,) = stored_files(services, study, series, instance)
    if not frame.isdigit():
        raise BadRequest(f"frame '{frame[:16]}' is not a frame number: use one number "
                         "from 1 to render")
    return _rendered(services, f, int(frame), options)


@router.get("/studies/{study}/rendered",
            summary="The study's representative image rendered as JPEG or PNG")
def study_rendered(study: str, request: Request, services: ServicesDep) -> Response:
    options = _render_options(request, default_viewport=None)
    return _rendered(services, _representative(stored_files(services, study)), 1, options)


@router.get("/studies/{study}/series/{series}/rendered",
            summary="The series' representative image rendered as JPEG or PNG")
def series_rendered(study: str, series: str, request: Request,
                    services: ServicesDep) -> Response:
    options = _render_options(request, default_viewport=None)
    f = _representative(stored_files(services, study, series))
    return _rendered(services, f, 1, options)


def _thumbnail(request: Request, services: Services, files: list[InstanceFile]) -> Response:
    options = _render_options(request, default_viewport=(_THUMBNAIL_SIZE, _THUMBNAIL_SIZE))
    f = _representative(files)
    frames = f.number_of_frames or 1
    return _rendered(services, f, frames // 2 + 1 if frames > 1 else 1, options)


@router.get("/studies/{study}/thumbnail", summary="A small picture of the study")
def study_thumbnail(study: str, request: Request, services: ServicesDep) -> Response:
    return _thumbnail(request, services, stored_files(services, study))


@router.get("/studies/{study}/series/{series}/thumbnail", summary="A small picture of the series")
def series_thumbnail(study: str, series: str, request: Request,
                     services: ServicesDep) -> Response:
    return _thumbnail(request, services, stored_files(services, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            summary="A small picture of the instance")
def instance_thumbnail(study: str, series: str, instance: str, request: Request,
                       services: ServicesDep) -> Response:
    return _thumbnail(request, services, stored_files(services, study, series, instance))
