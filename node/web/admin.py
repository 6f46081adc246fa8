"""Administration over REST, all behind the admin token.

``/config/ae`` the node's own AE title and port; ``/config/source`` the callers;
``/config/destination`` where the node sends, and ``…/{aet}/echo`` to test one.
Changes to the node's own AE title or port are kept in the catalog and take effect at
the next start; sources and destinations take effect at once.

``/admin/…`` is what the ``precedent`` command uses while the node owns its data folder
(:mod:`node.admin_client`): ``POST /admin/index/import`` (folders on this machine),
``POST /admin/collections/import`` (a labelled image folder on this machine) and ``POST
/admin/index/rebuild`` start an operation (202) that ``GET /admin/operations/{id}``
follows; ``POST /admin/reports/import`` takes a CSV body. The backfills' routes
(``/admin/backfill…``, :mod:`node.web.backfill`) sit under the same prefix, behind the
same admin dependency.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pynetdicom.status import STATUS_SUCCESS, code_to_category

from node.dimse.scu import echo
from node.errors import BadRequest, NotFound, PayloadTooLarge
from node.operations import Operations
from node.runtime import Services
from node.settings import validate_ae_title
from node.storage import aes
from node.web._deps import ServicesDep
from node.web.auth import require_admin

__all__ = ["router"]

router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin)])

#: the largest reports CSV taken over REST
_MAX_CSV_BYTES = 256 * 1024 * 1024


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


class ImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: absolute paths on the node's machine, readable by the node's user
    paths: list[str] = Field(min_length=1)
    #: follow the indexing of what was stored (else store and queue only)
    index: bool = True


class CollectionIn(BaseModel):
    """The flags of ``precedent import collection``; paths absolute on the node's machine,
    readable by the node's user."""

    model_config = ConfigDict(extra="forbid")

    folder: str
    name: str | None = None
    modality: str | None = None
    labels: str | None = None
    captions: str | None = None
    patient_from: str | None = None


class RebuildIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: the open_clip reference to re-embed with; absent: the node's current model
    model: str | None = None


@router.get("/config/ae")
def get_node_ae(services: ServicesDep) -> dict[str, Any]:
    stored = aes.get_node_config(services.connections.get())
    node = services.settings.node
    return {
        "ae_title": node.ae_title,
        "dimse_port": node.dimse_port,
        "pending": stored if stored.get("ae_title", node.ae_title) != node.ae_title
        or int(stored.get("dimse_port", node.dimse_port)) != node.dimse_port else {},
    }


@router.put("/config/ae")
def put_node_ae(body: NodeAeIn, services: ServicesDep) -> dict[str, Any]:
    values = {k: str(v) for k, v in body.model_dump(exclude_none=True).items()}
    if not values:
        raise BadRequest("give ae_title and/or dimse_port")
    aes.set_node_config(services.connections.get(), **values)
    return {**get_node_ae(services), "detail": "takes effect when the node restarts"}


@router.get("/config/source")
def list_sources(services: ServicesDep) -> list[dict[str, Any]]:
    return [s.as_json() for s in aes.list_sources(services.connections.get())]


@router.post("/config/source", status_code=201)
def add_source(body: SourceIn, services: ServicesDep) -> dict[str, Any]:
    try:
        permissions = aes.parse_permissions(body.permissions)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    source = aes.add_source(services.connections.get(), body.ae_title,
                            host=body.host, permissions=permissions)
    return source.as_json()


@router.delete("/config/source/{ae_title}", status_code=204)
def remove_source(ae_title: str, services: ServicesDep) -> Response:
    aes.remove_source(services.connections.get(), ae_title)
    return Response(status_code=204)


@router.get("/config/destination")
def list_destinations(services: ServicesDep) -> list[dict[str, Any]]:
    return [d.as_json() for d in aes.list_destinations(services.connections.get())]


@router.post("/config/destination", status_code=201)
def add_destination(body: DestinationIn, services: ServicesDep) -> dict[str, Any]:
    try:
        dest = aes.add_destination(services.connections.get(), body.ae_title,
                                   host=body.host, port=body.port,
                                   dicomweb_url=body.dicomweb_url)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return dest.as_json()


@router.delete("/config/destination/{ae_title}", status_code=204)
def remove_destination(ae_title: str, services: ServicesDep) -> Response:
    aes.remove_destination(services.connections.get(), ae_title)
    return Response(status_code=204)


@router.post("/config/destination/{ae_title}/echo")
def echo_destination(ae_title: str, services: ServicesDep) -> dict[str, Any]:
    """C-ECHO the destination: its status; 502 (DestinationUnreachable) when it does not
    accept an association."""
    dest = aes.get_destination(services.connections.get(), ae_title)
    if dest is None:
        raise NotFound(f"destination AE title {ae_title!r} is not configured")
    status = echo(dest, calling_ae=services.settings.node.ae_title)
    return {"ae_title": ae_title, "status": status,
            "success": code_to_category(status) == STATUS_SUCCESS}


# -- operations the running node performs for the precedent command --------------------


def _operations(services: Services) -> Operations:
    if services.operations is None:
        raise NotFound("this server runs no operations (it is not a running node)")
    return services.operations


@router.post("/admin/index/import", status_code=202)
def start_import(body: ImportIn, services: ServicesDep) -> dict[str, Any]:
    """Store (and index) the DICOM files under the paths, as the node's user reads them."""
    paths = [Path(p) for p in body.paths]
    relative = [str(p) for p in paths if not p.is_absolute()]
    if relative:
        raise BadRequest(f"paths must be absolute on the node's machine: {relative[:3]}")
    try:
        op = _operations(services).start_import(paths, index=body.index)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return op.as_json()


@router.post("/admin/collections/import", status_code=202)
def start_collection_import(body: CollectionIn, services: ServicesDep) -> dict[str, Any]:
    """Import a labelled PNG/JPEG folder as Secondary Captures with reports; the
    operation's ``result`` is the import's summary."""
    from node.image_collections.importer import open_collection

    paths = {"folder": body.folder, "labels": body.labels, "captions": body.captions}
    relative = [f"{k} {v!r}" for k, v in paths.items() if v and not Path(v).is_absolute()]
    if relative:
        raise BadRequest(f"paths must be absolute on the node's machine: {', '.join(relative)}")
    opened = open_collection(
        Path(body.folder), name=body.name, modality=body.modality,
        labels_csv=Path(body.labels) if body.labels else None,
        captions=Path(body.captions) if body.captions else None,
        patient_from=body.patient_from)
    return _operations(services).start_collection(opened).as_json()


@router.post("/admin/index/rebuild", status_code=202)
def start_rebuild(body: RebuildIn, services: ServicesDep) -> dict[str, Any]:
    """Re-embed everything (with ``model`` when given): the node's own rebuild."""
    return _operations(services).start_rebuild(body.model).as_json()


@router.get("/admin/operations/{op_id}")
def get_operation(op_id: str, services: ServicesDep) -> dict[str, Any]:
    return _operations(services).get(op_id).as_json()


@router.post("/admin/reports/import")
def import_reports(services: ServicesDep,
                   body: Annotated[bytes, Body(media_type="text/csv")]) -> dict[str, Any]:
    """Attach reports from the CSV body (the columns of ``precedent reports import``)."""
    from node.reporting import import_reports_csv

    if len(body) > _MAX_CSV_BYTES:
        raise PayloadTooLarge(f"the CSV is over {_MAX_CSV_BYTES} bytes; split it")
    folder = services.settings.node.data_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        summary = import_reports_csv(services.connections.get(), name)
    finally:
        os.unlink(name)
    return {**summary.as_json(), "summary": str(summary)}
