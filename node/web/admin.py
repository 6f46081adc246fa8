"""AE-title administration over REST (admin token when configured).

``/config/ae`` the node's own AE title and port; ``/config/source`` the callers;
``/config/destination`` where the node sends, and ``…/{aet}/echo`` to test one.
Changes to the node's own AE title or port are kept in the catalog and take effect at
the next start; sources and destinations take effect at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from node.dimse.scu import DestinationUnreachable, echo
from node.errors import NotFound
from node.runtime import Services
from node.settings import validate_ae_title
from node.storage import aes
from node.web.auth import require_admin
from node.web.problems import Problem

__all__ = ["router"]

router = APIRouter(prefix="/config", tags=["admin"], dependencies=[Depends(require_admin)])


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("ae_title", check_fields=False)
    @classmethod
    def _aet(cls, v: str | None) -> str | None:
        return None if v is None else validate_ae_title(v)


class SourceIn(_Body):
    ae_title: str
    host: str | None = None
    permissions: list[str] | str = "all"


class DestinationIn(_Body):
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)


class NodeAeIn(_Body):
    ae_title: str | None = None
    dimse_port: int | None = Field(None, ge=1, le=65535)


@router.get("/ae")
def get_node_ae(request: Request) -> dict[str, Any]:
    services = _services(request)
    stored = aes.get_node_config(services.connections.get())
    node = services.settings.node
    return {
        "ae_title": node.ae_title,
        "dimse_port": node.dimse_port,
        "pending": stored if stored.get("ae_title", node.ae_title) != node.ae_title
        or int(stored.get("dimse_port", node.dimse_port)) != node.dimse_port else {},
    }


@router.put("/ae")
def put_node_ae(body: NodeAeIn, request: Request) -> dict[str, Any]:
    values = {k: str(v) for k, v in body.model_dump(exclude_none=True).items()}
    if not values:
        raise Problem(400, "give ae_title and/or dimse_port")
    aes.set_node_config(_services(request).connections.get(), **values)
    return {**get_node_ae(request), "detail": "takes effect when the node restarts"}


@router.get("/source")
def list_sources(request: Request) -> list[dict[str, Any]]:
    return [s.as_json() for s in aes.list_sources(_services(request).connections.get())]


@router.post("/source", status_code=201)
def add_source(body: SourceIn, request: Request) -> dict[str, Any]:
    try:
        permissions = aes.parse_permissions(body.permissions)
    except ValueError as exc:
        raise Problem(400, str(exc)) from exc
    source = aes.add_source(_services(request).connections.get(), body.ae_title,
                            host=body.host, permissions=permissions)
    return source.as_json()


@router.delete("/source/{ae_title}", status_code=204)
def remove_source(ae_title: str, request: Request) -> Response:
    aes.remove_source(_services(request).connections.get(), ae_title)
    return Response(status_code=204)


@router.get("/destination")
def list_destinations(request: Request) -> list[dict[str, Any]]:
    return [d.as_json() for d in aes.list_destinations(_services(request).connections.get())]


@router.post("/destination", status_code=201)
def add_destination(body: DestinationIn, request: Request) -> dict[str, Any]:
    dest = aes.add_destination(_services(request).connections.get(), body.ae_title,
                               host=body.host, port=body.port)
    return dest.as_json()


@router.delete("/destination/{ae_title}", status_code=204)
def remove_destination(ae_title: str, request: Request) -> Response:
    aes.remove_destination(_services(request).connections.get(), ae_title)
    return Response(status_code=204)


@router.post("/destination/{ae_title}/echo")
def echo_destination(ae_title: str, request: Request) -> dict[str, Any]:
    services = _services(request)
    dest = aes.get_destination(services.connections.get(), ae_title)
    if dest is None:
        raise NotFound(f"destination AE title {ae_title!r} is not configured")
    try:
        status = echo(dest, calling_ae=services.settings.node.ae_title)
    except DestinationUnreachable as exc:
        raise Problem(502, str(exc), title="Destination unreachable") from exc
    return {"ae_title": ae_title, "status": status, "success": status == 0}
