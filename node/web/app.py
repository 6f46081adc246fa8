"""The REST side's composition root: ``create_app(services)`` wires DICOMweb, the
similar-case extension, the admin routes and the health route into one FastAPI
application, with the access log (:mod:`node.web.access_log`) around all of it. Nothing
imports this module but :mod:`node.web`'s ``__init__``."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from node.retrieval import UploadLimits
from node.runtime import Services
from node.web import (
    admin,
    backfill,
    delete,
    health,
    kos,
    qido,
    rendered,
    reports,
    similar,
    stow,
    wado,
)
from node.web._deps import DICOMWEB_PREFIX, ServicesDep
from node.web.access_log import AccessLog, route_words
from node.web.auth import require_read
from node.web.problems import install_problem_handlers

__all__ = ["create_app"]


async def _read_scope(request: Request, services: ServicesDep) -> None:
    """:func:`~node.web.auth.require_read`, run on the event loop: it does no I/O, and a
    plain ``def`` dependency costs a thread-pool round trip on every request."""
    require_read(request, services)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Precedent",
        summary="DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and a similar-case extension",
        version="0.1.0",
    )
    app.state.services = services
    app.state.upload_limits = UploadLimits(max_pixels=services.settings.http.max_upload_pixels)
    install_problem_handlers(app)
    if services.settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(services.settings.http.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            expose_headers=["Precedent-Consensus", "Precedent-Ranking"],
        )
    read = [Depends(_read_scope)]
    for module in (qido, wado, rendered, stow, similar, reports, kos):
        app.include_router(module.router, prefix=DICOMWEB_PREFIX, dependencies=read)
    app.include_router(delete.router, prefix=DICOMWEB_PREFIX, dependencies=read)
    # the admin API (/config, /admin): each router carries the admin dependency
    for module in (admin, backfill):
        app.include_router(module.router)
    app.include_router(health.router)
    # outermost: every request, CORS answers included
    app.add_middleware(AccessLog, words=route_words(app))
    return app
