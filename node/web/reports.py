"""``GET /studies/{study}/report``: the study's report text and labels (read scope)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from node.errors import UnknownObject
from node.storage import holdings
from node.storage.study_reports import get_report
from node.web._deps import ServicesDep, check_uid

__all__ = ["router"]

router = APIRouter(tags=["reports"])


@router.get("/studies/{study}/report")
def study_report(study: str, services: ServicesDep) -> JSONResponse:
    """``{"StudyInstanceUID", "text", "labels", "source"}``; 404 when there is none."""
    check_uid(study, "StudyInstanceUID")
    conn = services.connections.get()
    report = get_report(conn, study)
    if report is None:
        if holdings.study_record(conn, study) is None:
            raise UnknownObject(f"study {study} is not on this node")
        raise UnknownObject(f"study {study} has no report (none was received as SR or PDF, "
                            "nor imported)")
    return JSONResponse(report.as_json())
