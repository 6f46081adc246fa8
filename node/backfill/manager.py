"""The node's backfills: started, paused, resumed and cancelled here (the REST admin
routes call this), run by one :class:`~node.backfill.runner.JobRunner` each, inside the
node, under its stop event.

Making the manager does nothing; at start-up (:meth:`BackfillManager.recover`, before
the node takes any study in) the plan's tables are made when missing, what a stop or a
crash left in hand goes back to pending, and what a C-MOVE had brought by then
gets the backfill's source; :meth:`BackfillManager.start` then runs every backfill that
was running. :meth:`BackfillManager.close` ends them within seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from node.backfill import plan
from node.backfill._schema import ensure_schema
from node.backfill.dicomweb import DicomwebPacs
from node.backfill.dimse import DimsePacs
from node.backfill.limits import Clock, local_now
from node.backfill.pacs import Pacs, PacsSession, PacsUnavailable
from node.backfill.plan import Job
from node.backfill.progress import job_status
from node.backfill.request import BackfillRequest, ViaValues
from node.backfill.runner import FreeBytes, JobRunner
from node.backfill.states import JobStateValues, RetrieveModeValues
from node.dimse.scu import RetrieveValues
from node.errors import (
    BackfillConflict,
    IngestError,
    InvalidBackfill,
    NotFound,
    UnknownBackfill,
)
from node.storage import aes
from node.storage.files import free_bytes
from node.storage.sources import backfill_source, mark_backfilled

if TYPE_CHECKING:
    from node.runtime import Services

__all__ = ["BackfillManager"]

log = logging.getLogger(__name__)

#: how long :meth:`BackfillManager.close` waits for the workers (their sessions aborted)
_JOIN_S = 20.0
_ACTIVE = (JobStateValues.RUNNING, JobStateValues.PAUSED)


class _ConfiguredPacs:
    """Opens sessions with the backfill's source as configured now (so an admin may fix
    its host or port while the backfill waits)."""

    def __init__(self, manager: BackfillManager, job: Job) -> None:
        self._manager = manager
        self._job = job

    def open(self) -> PacsSession:
        return self._manager._pacs_for(self._job).open()


class BackfillManager:
    """Every backfill of this node (see the module docstring)."""

    def __init__(self, services: Services, *, stop: threading.Event,
                 clock: Clock = local_now, free: FreeBytes = free_bytes) -> None:
        self.services = services
        self._stop = stop
        self._clock = clock
        self._free = free
        self._lock = threading.Lock()
        self._runners: dict[int, JobRunner] = {}

    @property
    def _conn(self) -> Any:
        return self.services.connections.get()

    # -- start-up and shutdown -----------------------------------------------------------

    def recover(self) -> int:
        """What a stop or a crash left ``moving`` goes back to pending; instances a C-MOVE
        had brought get the backfill's source (the plan's tables are made first, when
        missing). Returns how many studies were in hand."""
        conn = self._conn
        ensure_schema(conn)
        studies = plan.reset_moving(conn)
        for study in studies:
            job = plan.get_job(conn, study.job_id)
            if job is not None and job.retrieve is RetrieveModeValues.MOVE:
                mark_backfilled(conn, study_instance_uid=study.study_instance_uid,
                                series_instance_uids=None, since=study.started_at,
                                source=backfill_source(job.id))
        if studies:
            log.info("backfill: %d studies in hand at the last stop are pending again",
                     len(studies))
        return len(studies)

    def start(self) -> None:
        """Run every backfill that was running."""
        for job in plan.list_jobs(self._conn, states=[JobStateValues.RUNNING]):
            self._run(job)

    def close(self) -> None:
        """The node stops: sessions aborted, workers joined."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.abort()
        deadline = time.monotonic() + _JOIN_S  # one wait for them all
        for runner in runners:
            if not runner.join(max(0.0, deadline - time.monotonic())):
                log.warning("stopping: backfill %d has not finished; not waiting for it",
                            runner.job.id)

    # -- the PACS ------------------------------------------------------------------------

    def _store(self, job_id: int) -> Callable[[bytes, Dataset | None], None]:
        ingest = self.services.ingest
        source = backfill_source(job_id)

        def store(data: bytes, ds: Dataset | None = None) -> None:
            ingest.store(data, source=source, dataset=ds)

        return store

    def _pacs_for(self, job: Job) -> Pacs:
        destination = aes.get_destination(self._conn, job.source)
        if destination is None:
            raise PacsUnavailable(f"destination AE title {job.source!r} is not configured any "
                                  "more: add it again (precedent ae destination add …)")
        settings = self.services.settings
        timeout = settings.backfill.timeout_s
        if job.retrieve is RetrieveModeValues.WADO:
            if not destination.dicomweb_url:
                raise PacsUnavailable(f"destination {job.source} has no DICOMweb URL any more")
            return DicomwebPacs(destination.dicomweb_url, store=self._store(job.id),
                                timeout=timeout)
        store = self._store(job.id)

        def on_store(data: bytes) -> int:
            try:
                store(data, None)
            except IngestError as exc:
                return exc.status
            return 0x0000

        return DimsePacs(destination, calling_ae=settings.node.ae_title,
                         move_destination=settings.node.ae_title,
                         retrieve=RetrieveValues(job.retrieve.value),
                         on_store=on_store, timeout=timeout)

    def _run(self, job: Job) -> None:
        with self._lock:
            runner = self._runners.get(job.id)
            if runner is None:
                node = self.services.settings.node
                runner = JobRunner(
                    job, connections=self.services.connections,
                    pacs=_ConfiguredPacs(self, job), settings=self.services.settings.backfill,
                    data_dir=node.data_dir, reserve_bytes=node.free_space_reserve_mb * 2**20,
                    stop=self._stop, clock=self._clock, free=self._free)
                self._runners[job.id] = runner
        runner.start()

    # -- what an admin asks --------------------------------------------------------------

    def _job(self, job_id: int) -> Job:
        job = plan.get_job(self._conn, job_id)
        if job is None:
            raise UnknownBackfill(f"there is no backfill {job_id}: `precedent backfill "
                                  "status` lists them")
        return job

    def start_backfill(self, request: BackfillRequest) -> dict[str, Any]:
        """Plan and run a new backfill; its status."""
        settings = self.services.settings
        destination = aes.get_destination(self._conn, request.source)
        if destination is None:
            raise NotFound(f"destination AE title {request.source!r} is not configured: add "
                           f"the PACS with `precedent ae destination add {request.source} "
                           "HOST PORT`")
        if request.via is ViaValues.DICOMWEB:
            if not destination.dicomweb_url:
                raise InvalidBackfill(
                    f"destination {request.source} has no DICOMweb URL: remove it and add "
                    f"it again with `precedent ae destination add {request.source} "
                    f"{destination.host} {destination.port} --dicomweb URL`")
            retrieve = RetrieveModeValues.WADO
        elif request.source in settings.backfill.c_get_sources:
            retrieve = RetrieveModeValues.GET
        else:
            retrieve = RetrieveModeValues.MOVE
        for other in plan.list_jobs(self._conn, states=_ACTIVE):
            if other.source == request.source:
                raise BackfillConflict(
                    f"backfill {other.id} from {other.source} is {other.state.value} already: "
                    f"cancel it first (precedent backfill cancel {other.id})")
        job = plan.create_job(self._conn, request, retrieve=retrieve,
                              window_days=settings.backfill.window_days)
        log.info("backfill started job=%d source=%s via=%s retrieve=%s since=%s until=%s",
                 job.id, job.source, job.via.value, job.retrieve.value, job.since, job.until)
        self._run(job)
        return self.status(job.id)

    def pause(self, job_id: int) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state.final:
            raise BackfillConflict(f"backfill {job_id} is {job.state.value}: there is nothing "
                                   "to pause")
        plan.set_job_state(self._conn, job_id, JobStateValues.PAUSED,
                           only_from=[JobStateValues.RUNNING])
        with self._lock:
            runner = self._runners.get(job_id)
        if runner is not None:
            runner.halt()
        return self.status(job_id)

    def resume(self, job_id: int) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state is JobStateValues.CANCELLED:
            raise BackfillConflict(f"backfill {job_id} was cancelled: start a new one")
        if job.state is JobStateValues.DONE and plan.retry_failed(self._conn, job_id) == 0:
            raise BackfillConflict(f"backfill {job_id} is done and nothing failed: there is "
                                   "nothing to resume")
        plan.set_job_state(self._conn, job_id, JobStateValues.RUNNING)
        refreshed = plan.get_job(self._conn, job_id)
        assert refreshed is not None
        self._run(refreshed)
        return self.status(job_id)

    def cancel(self, job_id: int) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state.final:
            raise BackfillConflict(f"backfill {job_id} is {job.state.value} already")
        plan.set_job_state(self._conn, job_id, JobStateValues.CANCELLED, only_from=_ACTIVE)
        with self._lock:
            runner = self._runners.get(job_id)
        if runner is not None:
            runner.halt()
        return self.status(job_id)

    def status(self, job_id: int) -> dict[str, Any]:
        return job_status(self._conn, self._job(job_id))

    def statuses(self) -> list[dict[str, Any]]:
        conn = self._conn
        return [job_status(conn, job) for job in plan.list_jobs(conn)]

    def today(self) -> date:
        """The node's local date (``--until``'s default)."""
        return self._clock().date()
