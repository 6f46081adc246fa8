"""AE-title administration over REST (admin token when configured).

``/config/ae`` the node's own AE title and port; ``/config/source`` the callers;
``/config/destination`` where the node sends, and ``…/{aet}/echo`` to test one.
Changes to the node's own AE title or port are kept in the catalog and take effect at
the next start; sources and destinations take effect at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pynetdicom.status import STATUS_SUCCESS, code_to_category

from node.dimse.scu import echo
from node.errors import BadRequest, NotFound
from node.settings import validate_ae_title
from node.storage import aes
from node.web._deps import ServicesDep
from node.web.auth import require_admin

__all__ = ["router"]

router = APIRouter(prefix="/config", tags=["admin"], dependencies=[Depends(require_admin)])


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
    dicomweb_url: str | None = None


class NodeAeIn(_Body):
    ae_title: str | None = None
    dimse_port: int | None = Field(None, ge=1, le=65535)


@router.get("/ae")
def get_node_ae(services: ServicesDep) -> dict[str, Any]:
    stored = aes.get_node_config(services.connections.get())
    node = services.settings.node
    return {
        "ae_title": node.ae_title,
        "dimse_port": node.dimse_port,
        "pending": stored if stored.get("ae_title", node.ae_title) != node.ae_title
        or int(stored.get("dimse_port", node.dimse_port)) != node.dimse_port else {},
    }


@router.put("/ae")
def put_node_ae(body: NodeAeIn, services: ServicesDep) -> dict[str, Any]:
    values = {k: str(v) for k, v in body.model_dump(exclude_none=True).items()}
    if not values:
        raise BadRequest("give ae_title and/or dimse_port")
    aes.set_node_config(services.connections.get(), **values)
    return {**get_node_ae(services), "detail": "takes effect when the node restarts"}


@router.get("/source")
def list_sources(services: ServicesDep) -> list[dict[str, Any]]:
    return [s.as_json() for s in aes.list_sources(services.connections.get())]


@router.post("/source", status_code=201)
def add_source(body: SourceIn, services: ServicesDep) -> dict[str, Any]:
    try:
        permissions = aes.parse_permissions(body.permissions)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    source = aes.add_source(services.connections.get(), body.ae_title,
                            host=body.host, permissions=permissions)
    return source.as_json()


@router.delete("/source/{ae_title}", status_code=204)
def remove_source(ae_title: str, services: ServicesDep) -> Response:
    aes.remove_source(services.connections.get(), ae_title)
    return Response(status_code=204)


@router.get("/destination")
def list_destinations(services: ServicesDep) -> list[dict[str, Any]]:
    return [d.as_json() for d in aes.list_destinations(services.connections.get())]


@router.post("/destination", status_code=201)
def add_destination(body: DestinationIn, services: ServicesDep) -> dict[str, Any]:
    try:
        dest = aes.add_destination(services.connections.get(), body.ae_title,
                                   host=body.host, port=body.port,
                                   dicomweb_url=body.dicomweb_url)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return dest.as_json()


@router.delete("/destination/{ae_title}", status_code=204)
def remove_destination(ae_title: str, services: ServicesDep) -> Response:
    aes.remove_destination(services.connections.get(), ae_title)
    return Response(status_code=204)


@router.post("/destination/{ae_title}/echo")
def echo_destination(ae_title: str, services: ServicesDep) -> dict[str, Any]:
    """C-ECHO the destination: its status; 502 (DestinationUnreachable) when it does not
    accept an association."""
    dest = aes.get_destination(services.connections.get(), ae_title)
    if dest is None:
        raise NotFound(f"destination AE title {ae_title!r} is not configured")
    status = echo(dest, calling_ae=services.settings.node.ae_title)
    return {"ae_title": ae_title, "status": status,
            "success": code_to_category(status) == STATUS_SUCCESS}
