"""DELETE of studies, series and instances (admin scope): the catalog, the work queue,
the vectors and the files. A right-to-erasure request, or a study sent by mistake."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from node.runtime import Services
from node.storage.deletion import delete_objects
from node.web._deps import ServicesDep, check_uid
from node.web.auth import require_admin

__all__ = ["router"]

router = APIRouter(tags=["delete"], dependencies=[Depends(require_admin)])


def _delete(services: Services, study: str, series: str | None = None,
            sop: str | None = None) -> Response:
    for name, uid in (("StudyInstanceUID", study), ("SeriesInstanceUID", series),
                      ("SOPInstanceUID", sop)):
        if uid is not None:
            check_uid(uid, name)
    # Without a loaded model the index files are stale after this and are rebuilt from
    # the vectors table at the next load: no need to open them just to delete.
    delete_objects(services.connections.get(), services.settings.node.data_dir,
                   services.model.index_set,
                   study=study, series=series, sop=sop)
    return Response(status_code=204)


@router.delete("/studies/{study}", status_code=204)
def delete_study(study: str, services: ServicesDep) -> Response:
    return _delete(services, study)


@router.delete("/studies/{study}/series/{series}", status_code=204)
def delete_series(study: str, series: str, services: ServicesDep) -> Response:
    return _delete(services, study, series)


@router.delete("/studies/{study}/series/{series}/instances/{sop}", status_code=204)
def delete_instance(study: str, series: str, sop: str, services: ServicesDep) -> Response:
    return _delete(services, study, series, sop)
