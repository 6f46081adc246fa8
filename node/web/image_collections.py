"""Collection import over REST (admin token when configured): ``POST
/admin/collections/import`` with the flags of ``precedent import collection`` as JSON;
answers the import's summary (broken images are lines in it). The folder, labels and
captions paths are read by the node, on its machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from node.image_collections.importer import import_collection
from node.web._deps import ServicesDep
from node.web.auth import require_admin

__all__ = ["router"]

router = APIRouter(prefix="/admin/collections", tags=["admin"],
                   dependencies=[Depends(require_admin)])


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder: str
    name: str | None = None
    modality: str | None = None
    labels: str | None = None
    captions: str | None = None
    patient_from: str | None = None


@router.post("/import")
def import_collection_route(body: CollectionIn, services: ServicesDep) -> dict[str, Any]:
    summary = import_collection(
        services.ingest, services.connections.get(), Path(body.folder), name=body.name,
        modality=body.modality, labels_csv=Path(body.labels) if body.labels else None,
        captions=Path(body.captions) if body.captions else None,
        patient_from=body.patient_from)
    return summary.as_json()
