"""``GET /studies/{study}/report``: the study's report text and labels (read scope)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from node.runtime import Services
from node.storage.study_reports import get_report
from node.storage.uids import is_valid_uid
from node.web.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["reports"])


@router.get("/studies/{study}/report")
def study_report(request: Request, study: str) -> JSONResponse:
    """``{"StudyInstanceUID", "text", "labels", "source"}``; 404 when there is none."""
    if not is_valid_uid(study):
        raise Problem(400, f"StudyInstanceUID {study[:80]!r} is not a valid UID "
                      "(digits and dots, at most 64 characters)")
    services: Services = request.app.state.services
    conn = services.connections.get()
    report = get_report(conn, study)
    if report is None:
        known = conn.execute("SELECT 1 FROM studies WHERE study_instance_uid = ?",
                             (study,)).fetchone()
        if known is None:
            raise Problem(404, f"study {study} is not on this node")
        raise Problem(404, f"study {study} has no report (none was received as SR or PDF, "
                      "nor imported)")
    return JSONResponse(report.as_json())
