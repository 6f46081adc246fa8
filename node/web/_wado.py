"""What the WADO-RS routers share: the stored files of a study, series or instance
(404 when none), content negotiation of ``Accept`` media ranges (multipart/related, or
a single part where the client asks for one), and multipart/related answers streamed
part by part."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import StreamingResponse

from node.errors import NotAcceptable, UnknownObject
from node.runtime import Services
from node.storage.query import InstanceFile, instance_files
from node.web._deps import DICOM

__all__ = [
    "MediaRange",
    "accept_ranges",
    "check_multipart",
    "multipart",
    "single_part",
    "stored_files",
    "stored_path",
]


def stored_files(services: Services, study: str, series: str | None = None,
                 instance: str | None = None) -> list[InstanceFile]:
    """The stored instances of the study, series or instance; :class:`UnknownObject`
    (404) when there are none."""
    files = instance_files(services.connections.get(), study_instance_uid=study,
                           series_instance_uid=series, sop_instance_uid=instance)
    if not files:
        if instance is not None:
            what = f"instance {instance[:64]} of series {str(series)[:64]}"
        elif series is not None:
            what = f"series {series[:64]}"
        else:
            raise UnknownObject(f"no study {study[:64]} is stored on this node")
        raise UnknownObject(f"no {what} of study {study[:64]} is stored on this node")
    return files


def stored_path(services: Services, f: InstanceFile) -> Path:
    """Where the instance's bytes are."""
    return Path(services.ingest.data_dir) / f.path


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One media range of an ``Accept`` header, its parameters' names lower-cased."""

    type: str
    params: dict[str, str]


def accept_ranges(request: Request) -> list[MediaRange]:
    ranges = []
    for item in request.headers.get("accept", "").split(","):
        if not item.strip():
            continue
        media, *raw = (p.strip() for p in item.split(";"))
        params = {}
        for p in raw:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        ranges.append(MediaRange(media.lower(), params))
    return ranges


def check_multipart(request: Request, part_type: str, *, stored_syntaxes: set[str]) -> None:
    """:class:`NotAcceptable` (406) unless the Accept header allows multipart/related
    with ``part_type`` (for instances: in the transfer syntaxes they are stored in)."""
    ranges = accept_ranges(request)
    if not ranges:
        return
    for r in ranges:
        if r.type in ("*/*", "multipart/*") or (
            r.type == "multipart/related" and r.params.get("type", part_type) in (
                part_type, "*/*", part_type.split("/")[0] + "/*")):
            syntax = r.params.get("transfer-syntax", "*")
            if part_type == DICOM and syntax != "*" and stored_syntaxes - {syntax}:
                continue
            return
        if r.type == part_type and part_type == DICOM:
            return  # a plain application/dicom: answered multipart all the same
    if part_type == DICOM:
        stored = ", ".join(sorted(stored_syntaxes))
        raise NotAcceptable('this node returns instances as stored: ask with Accept: '
                            'multipart/related; type="application/dicom"; transfer-syntax=* '
                            f"(stored transfer syntaxes: {stored})")
    raise NotAcceptable(f'this resource is sent as multipart/related; type="{part_type}": '
                        "ask with that Accept header (or */*)")


def single_part(request: Request, part_type: str) -> bool:
    """The Accept header asks for one bare ``part_type`` body (PS3.18 single-part, as
    OHIF's ``singlepart: 'bulkdata'`` does) and admits no multipart answer."""
    ranges = accept_ranges(request)
    bare = (part_type, part_type.split("/")[0] + "/*")
    return any(r.type in bare for r in ranges) and not any(
        r.type in ("*/*", "multipart/*", "multipart/related") for r in ranges)


def multipart(parts: Iterator[tuple[str, Iterator[bytes] | bytes]], part_type: str,
              ) -> StreamingResponse:
    """A ``multipart/related`` answer of ``(Content-Type, bytes or chunks)`` parts."""
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
