"""What ``backfill status`` and ``GET /admin/backfill/{id}`` say about a backfill: its
counts of windows and studies by state, instances wanted and received, its recent rate,
an ETA, and the failures with their reasons. Reads the plan tables only."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from database import Connection
from node.backfill.plan import Job
from node.backfill.states import JobStateValues, PlanStateValues

__all__ = ["job_status"]

#: how many finished studies the rate is measured over
_RATE_WINDOW = 50
#: failures listed one by one (the reasons are counted over all of them)
_FAILURES_LISTED = 20


def _by_state(conn: Connection, table: str, job_id: int) -> dict[str, int]:
    counts = {s.value: 0 for s in PlanStateValues}
    for state, n in conn.execute(f"SELECT state, count(*) FROM {table} WHERE job_id = ? "
                                 "GROUP BY state", (job_id,)):
        counts[str(state)] = int(n)
    counts["total"] = sum(counts.values())
    return counts


def _rate(conn: Connection, job_id: int) -> tuple[float | None, float | None]:
    """Studies per hour and instances per second over the latest finished studies."""
    rows = conn.execute(
        """SELECT started_at, finished_at, coalesce(received, 0) FROM backfill_studies
           WHERE job_id = ? AND state = ? AND started_at IS NOT NULL
             AND finished_at IS NOT NULL
           ORDER BY finished_at DESC LIMIT ?""",
        (job_id, PlanStateValues.DONE.value, _RATE_WINDOW)).fetchall()
    if not rows:
        return None, None
    span = max(float(r[1]) for r in rows) - min(float(r[0]) for r in rows)
    if span <= 0:
        return None, None
    return len(rows) * 3600.0 / span, sum(int(r[2]) for r in rows) / span


def job_status(conn: Connection, job: Job) -> dict[str, Any]:
    """The status of ``job`` as the REST route answers it (JSON-ready)."""
    windows = _by_state(conn, "backfill_windows", job.id)
    studies = _by_state(conn, "backfill_studies", job.id)
    wanted, received = conn.execute(
        "SELECT coalesce(sum(wanted), 0), coalesce(sum(received), 0) FROM backfill_studies "
        "WHERE job_id = ?", (job.id,)).fetchone()
    per_hour, per_second = _rate(conn, job.id)
    remaining = sum(studies[s.value] for s in PlanStateValues if s.open)
    eta = None
    if job.state is JobStateValues.RUNNING and per_hour and remaining:
        eta = remaining * 3600.0 / per_hour
    failures = conn.execute(
        """SELECT study_instance_uid, study_date, state, attempts, reason FROM backfill_studies
           WHERE job_id = ? AND state IN (?, ?) AND reason IS NOT NULL
           ORDER BY updated_at DESC""",
        (job.id, PlanStateValues.FAILED.value, PlanStateValues.PARTIAL.value)).fetchall()
    window_failures = conn.execute(
        """SELECT date_from, date_to, time_from, time_to, state, attempts, reason
           FROM backfill_windows WHERE job_id = ? AND reason IS NOT NULL AND state != ?""",
        (job.id, PlanStateValues.DONE.value)).fetchall()
    reasons: Counter[str] = Counter(str(r["reason"]) for r in failures)
    reasons.update(str(r["reason"]) for r in window_failures)
    return {
        "id": job.id,
        "source": job.source,
        "via": job.via.value,
        "retrieve": job.retrieve.value,
        "since": job.since,
        "until": job.until,
        "modalities": list(job.modalities),
        "window": str(job.window) if job.window else None,
        "rate_limit": job.rate,
        "concurrency": job.concurrency,
        "state": job.state.value,
        "note": job.note,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "windows": windows,
        "studies": studies,
        "instances": {"wanted": int(wanted), "received": int(received)},
        "rate": {"studies_per_hour": per_hour, "instances_per_second": per_second},
        "eta_s": eta,
        "failures": [
            {"study_instance_uid": r["study_instance_uid"], "study_date": r["study_date"],
             "state": r["state"], "attempts": r["attempts"], "reason": r["reason"]}
            for r in failures[:_FAILURES_LISTED]
        ] + [
            {"window": f"{r['date_from']}-{r['date_to']} {r['time_from']}-{r['time_to']}"
             .strip(" -"), "state": r["state"], "attempts": r["attempts"],
             "reason": r["reason"]}
            for r in window_failures[:_FAILURES_LISTED]
        ],
        "failure_reasons": dict(reasons.most_common()),
        "as_of": time.time(),
    }
