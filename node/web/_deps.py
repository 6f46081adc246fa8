"""Request plumbing every router shares: the DICOMweb prefix, the media types, and the
node's parts as annotated FastAPI dependencies (``services: ServicesDep``, and the
upload limits the similar-case routes share, ``limits: UploadLimitsDep``).

Routers import this module, the other private helpers and the domain; never a sibling
router nor the composition root (:mod:`node.web.app`), which puts the
:class:`~node.runtime.Services` and the :class:`~node.retrieval.UploadLimits` on
``app.state`` for :func:`services` and :func:`upload_limits` to hand out.

The dependencies here do no I/O and are ``async``: FastAPI runs a plain ``def``
dependency in its thread pool, one round trip per dependency and request, which under
load costs more than the route itself (each hop waits for the GIL twice).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from node.errors import BadRequest
from node.retrieval import UploadLimits
from node.runtime import Services
from node.storage.uids import is_valid_uid

__all__ = [
    "DICOM",
    "DICOMWEB_PREFIX",
    "DICOM_JSON",
    "OCTET_STREAM",
    "PROBLEM_JSON",
    "BaseUrlDep",
    "ServicesDep",
    "UploadLimitsDep",
    "check_uid",
    "dicomweb_base",
    "services",
    "upload_limits",
]

DICOMWEB_PREFIX = "/dicom-web"

#: a DICOM Part 10 file (STOW-RS parts, WADO-RS instances, similar-case uploads)
DICOM = "application/dicom"
#: the DICOM JSON model (PS3.18 F.2): QIDO-RS, metadata, STOW-RS and similar-case answers
DICOM_JSON = "application/dicom+json"
#: RFC 7807 problem details: every failure
PROBLEM_JSON = "application/problem+json"
#: bulk data and frames
OCTET_STREAM = "application/octet-stream"


async def services(request: Request) -> Services:
    """The node's parts, as :func:`node.web.app.create_app` was given them."""
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


async def upload_limits(request: Request) -> UploadLimits:
    """What similar-case uploads may decode to, one and all together (one per app)."""
    found: UploadLimits = request.app.state.upload_limits
    return found


UploadLimitsDep = Annotated[UploadLimits, Depends(upload_limits)]


async def dicomweb_base(request: Request, services: ServicesDep) -> str:
    """The DICOMweb root clients should use (``RetrieveURL``, report links):
    ``[http] public_url`` + ``/dicom-web``, or the request's own base URL."""
    public = services.settings.http.public_url
    root = (public or str(request.base_url)).rstrip("/")
    return root if root.endswith(DICOMWEB_PREFIX) else root + DICOMWEB_PREFIX


BaseUrlDep = Annotated[str, Depends(dicomweb_base)]


def check_uid(value: str, name: str) -> str:
    """``value`` when it is a UID (a path segment or parameter named ``name``), else a
    :class:`~node.errors.BadRequest` saying what a UID is."""
    if not is_valid_uid(value):
        raise BadRequest(f"{name} {value[:80]!r} is not a valid UID (digits and dots, "
                         "at most 64 characters)")
    return value
