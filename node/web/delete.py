"""DELETE of studies, series and instances (admin scope): the catalog, the work queue,
the vectors and the files. A right-to-erasure request, or a study sent by mistake."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from node.runtime import Services, open_index
from node.storage.deletion import delete_objects
from node.storage.uids import is_valid_uid
from node.web.auth import require_admin
from node.web.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["delete"], dependencies=[Depends(require_admin)])


def _delete(request: Request, study: str, series: str | None = None,
            sop: str | None = None) -> Response:
    for name, uid in (("StudyInstanceUID", study), ("SeriesInstanceUID", series),
                      ("SOPInstanceUID", sop)):
        if uid is not None and not is_valid_uid(uid):
            raise Problem(400, f"{name} {uid[:80]!r} is not a valid UID (digits and dots, "
                               "at most 64 characters)")
    services: Services = request.app.state.services
    settings = services.settings
    index_set = services.model.index_set or open_index(settings)
    delete_objects(services.connections.get(), settings.node.data_dir, index_set,
                   study=study, series=series, sop=sop)
    return Response(status_code=204)


@router.delete("/studies/{study}", status_code=204)
def delete_study(study: str, request: Request) -> Response:
    return _delete(request, study)


@router.delete("/studies/{study}/series/{series}", status_code=204)
def delete_series(study: str, series: str, request: Request) -> Response:
    return _delete(request, study, series)


@router.delete("/studies/{study}/series/{series}/instances/{sop}", status_code=204)
def delete_instance(study: str, series: str, sop: str, request: Request) -> Response:
    return _delete(request, study, series, sop)
