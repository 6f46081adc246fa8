"""The queue worker: claimed instances through triage ▶ decode ▶ normalise ▶ embed ▶ index,
and complete volume series through their sampling decision.

One batch, in data-path order (:meth:`Worker._prepare`, then :meth:`Worker._finish`):

1. claim pending instances and look at each header (:func:`indexer.triage.triage`):
   skipped, failed or retried at once; projection images and multi-frame objects to
   decode; slices of volumes recorded with their series (:func:`indexer.slices.admit`)
   and held until the series is complete — or, if its sample is already decided (the
   slice came again), embedded or marked ``not_sampled`` as that sample says;
2. start the decision of each volume series that is complete now
   (:func:`indexer.decisions.start`): its chosen slices join the batch;
3. decode and normalise (in a process pool when ``decode_processes > 0``), embed every
   picture in one call, index the instances embedded on their own, and commit each
   series' new sample in one transaction (:func:`indexer.decisions.commit`).

In :meth:`Worker.run` the next batch is claimed and decoded while the current one is
embedded, so the model is fed continuously; a series with work in the current batch is
not decided in the next one.

Safe to kill at any moment: vectors are unique per (level, UID) and written in one
transaction with the sample they belong to, the index files are rebuilt from the catalog
when stale, instances left ``in_progress`` go back to ``pending`` when the embedded
worker starts (a named ``claimer`` on a shared catalog: when the maintenance leader
hands back the claims of dead processes, :func:`indexer.queue.return_claims`), and a
series whose decision did not commit is still open and decided again.

Several workers may share one queue (PostgreSQL): each claims under its own ``claimer``
(its process id), and writes outcomes and vectors only while its claims are its own.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import numpy.typing as npt

import database
from indexer import decisions, queue, slices
from indexer._schema import ensure_schema
from indexer.decisions import Decision
from indexer.embedder import Embedder
from indexer.errors import ModelMismatch
from indexer.image_plane import SliceHeader
from indexer.index import IndexSet
from indexer.sampling import VolumeSampling
from indexer.stages import (
    BatchReport,
    Decoded,
    decode_and_normalise,
    embed,
    embed_failed,
    index,
    instance_vectors,
    sort_outcomes,
)
from indexer.triage import TriageValues, triage

__all__ = ["Worker"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Job:
    """An instance to decode and embed: its frames (None: its one picture), and the
    series decision it belongs to (None: embedded on its own)."""

    sop_instance_uid: str
    path: str
    frames: tuple[int, ...] | None = None
    decision: Decision | None = None


@dataclasses.dataclass
class _Batch:
    """One round of work: what was claimed, what to embed, the decisions under way."""

    claimed: int = 0
    jobs: list[_Job] = dataclasses.field(default_factory=list)
    pending: list[cf.Future[Decoded] | Decoded] = dataclasses.field(default_factory=list)
    decisions: list[Decision] = dataclasses.field(default_factory=list)
    #: series with work in this batch (not decided again until it is finished)
    series: set[str] = dataclasses.field(default_factory=set)
    attempts: dict[str, int] = dataclasses.field(default_factory=dict)
    moved: int = 0

    @property
    def handled(self) -> int:
        """Instances this round claimed, plus held slices a decision moved on."""
        return self.claimed + self.moved


class Worker:
    """Takes batches off the work queue and indexes them (one per node process)."""

    def __init__(
        self,
        *,
        catalog: database.Target,
        data_dir: str | os.PathLike[str],
        embedder: Embedder,
        index_set: IndexSet,
        sampling: VolumeSampling | None = None,
        batch_size: int = 32,
        decode_processes: int = 0,
        max_attempts: int = 3,
        backoff_s: float = 5.0,
        poll_interval_s: float = 0.5,
        save_interval_s: float = 30.0,
        claimer: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if decode_processes < 0:
            raise ValueError(f"decode_processes must not be negative, got {decode_processes}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if backoff_s < 0 or poll_interval_s < 0 or save_interval_s < 0:
            raise ValueError("backoff_s, poll_interval_s and save_interval_s must not be negative")
        self.catalog = catalog
        self.data_dir = Path(data_dir)
        self.embedder = embedder
        self.index_set = index_set
        self.sampling = sampling if sampling is not None else VolumeSampling()
        self.batch_size = batch_size
        self.decode_processes = decode_processes
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.poll_interval_s = poll_interval_s
        self.save_interval_s = save_interval_s
        #: the name claims are taken under (None: the embedded worker, alone on its queue)
        self.claimer = claimer
        # Used by one thread at a time: the one that builds the worker, then the one that
        # runs it (the node builds it at start-up and runs it in its own thread).
        self._conn = database.connect(self.catalog)
        ensure_schema(self._conn)
        index_set.check_model(embedder.identity, embedder.dim)
        if claimer is None:  # alone on the queue: whatever is in progress was ours
            recovered = queue.reset_in_progress(self._conn, max_attempts=max_attempts)
            if recovered:
                log.info("worker start: %d interrupted instances back to pending", recovered)
        self._pool: cf.ProcessPoolExecutor | None = None

    # -- 1. claim and triage; 2. decide complete series ---------------------------------

    def _prepare(self, busy: set[str]) -> _Batch:
        """Claim a batch, triage it, start the decisions that are due, submit decoding."""
        conn, batch, now = self._conn, _Batch(), time.time()
        items = queue.claim(conn, self.batch_size, claimer=self.claimer)
        batch.claimed = len(items)
        early, arrivals = BatchReport(), []
        for it in items:
            batch.attempts[it.sop_instance_uid] = it.attempts
            t = triage(it.sop_instance_uid, self.data_dir / it.path, self.sampling)
            if t.next is TriageValues.EMBED:
                batch.jobs.append(_Job(it.sop_instance_uid, it.path, t.frames))
            elif t.next is TriageValues.SLICE and t.header is not None:
                arrivals.append((t.header, it.enqueued_at, it.path))
            elif t.next is TriageValues.SKIP:
                early.skipped[it.sop_instance_uid] = t.reason or ""
            elif t.next is TriageValues.FAIL:
                early.failed[it.sop_instance_uid] = t.reason or ""
            else:
                early.transient[it.sop_instance_uid] = t.reason or ""
        self._mark(early, batch.attempts)
        if arrivals:
            self._admit(arrivals, batch, busy, now)
        self._decide(batch, busy, now)
        batch.pending = self._submit(batch.jobs)
        return batch

    def _admit(self, arrivals: list[tuple[SliceHeader, float, str]], batch: _Batch,
               busy: set[str], now: float) -> None:
        """Slices to their series: held, embedded (their series' sample has them) or not
        sampled (it has not)."""
        conn, claimer = self._conn, self.claimer

        def work(c: database.Connection) -> tuple[list[tuple[_Job, str]], list[str]]:
            jobs: list[tuple[_Job, str]] = []
            later: list[str] = []
            outcome = slices.admit(c, [(h, at) for h, at, _ in arrivals], self.sampling.k)
            queue.hold(c, [u for u, a in outcome.items() if a is slices.AdmissionValues.HOLD],
                       decisions.HELD_REASON, claimer=claimer)
            for header, _, path in arrivals:
                uid, series = header.sop_instance_uid, header.series_instance_uid
                if outcome[uid] is slices.AdmissionValues.NOT_SAMPLED:
                    reason = decisions.not_sampled_reason(self.sampling.k(header.modality))
                    queue.mark(c, [uid], queue.WorkStateValues.NOT_SAMPLED, reason)
                elif outcome[uid] is slices.AdmissionValues.EMBED:
                    if series in busy:
                        later.append(uid)
                    else:
                        jobs.append((_Job(uid, path), series))
            return jobs, later

        jobs, later = database.retrying(conn, work)  # run again after a collision
        for job, series in jobs:
            batch.jobs.append(job)
            batch.series.add(series)
        if later:  # its series is being sampled in the batch in hand: look again shortly
            queue.defer(conn, later, until=now + max(self.poll_interval_s, 0.05),
                        claimer=claimer)

    def _decide(self, batch: _Batch, busy: set[str], now: float) -> None:
        """Start the decisions of the series that are complete now."""
        conn = self._conn
        due = slices.due_series(
            conn, now=now, quiet_s=self.sampling.series_quiet_s,
            oldest_unsorted=queue.oldest_unsorted_arrival(conn),
        )
        for series in due:
            uid = series.series_instance_uid
            if uid in busy or uid in batch.series:
                continue
            if len(batch.jobs) >= self.batch_size and batch.decisions:
                break  # the rest in the next batch
            decision = decisions.start(conn, series, self.sampling, now=now,
                                       claimer=self.claimer)
            batch.moved += decision.moved
            if decision.settled:
                continue
            batch.decisions.append(decision)
            batch.series.add(uid)
            for it in decision.taken:
                batch.attempts[it.sop_instance_uid] = it.attempts
                batch.jobs.append(_Job(it.sop_instance_uid, it.path, None, decision))

    # -- 3. decode, embed, index ----------------------------------------------------------

    def _executor(self) -> cf.ProcessPoolExecutor | None:
        if self.decode_processes == 0:
            return None
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.decode_processes, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _submit(self, jobs: Sequence[_Job]) -> list[cf.Future[Decoded] | Decoded]:
        pool = self._executor()
        size, crop = self.embedder.image_size, self.embedder.crops_to_square
        out: list[cf.Future[Decoded] | Decoded] = []
        for job in jobs:
            args = (job.sop_instance_uid, str(self.data_dir / job.path), size, crop, job.frames)
            if pool is None:
                out.append(decode_and_normalise(*args))
            else:
                out.append(pool.submit(decode_and_normalise, *args))
        return out

    def _collect(self, batch: _Batch) -> list[Decoded]:
        out: list[Decoded] = []
        broken = False
        for job, f in zip(batch.jobs, batch.pending, strict=True):
            if isinstance(f, Decoded):
                out.append(f)
                continue
            try:
                out.append(f.result())
            except BrokenProcessPool as exc:
                broken = True
                out.append(Decoded(job.sop_instance_uid,
                                   transient=f"decode process died: {exc}"))
        if broken and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return out

    def _finish(self, batch: _Batch) -> BatchReport:
        """Embed the batch's pictures, index them, commit its decisions, mark the queue."""
        report, images = sort_outcomes(self._collect(batch))
        owner = {job.sop_instance_uid: job.decision for job in batch.jobs}
        vectors: dict[str, npt.NDArray[np.float32]] = {}
        if images:
            try:
                vectors = embed(self.embedder, images)
            except (RuntimeError, ValueError, MemoryError) as exc:  # the model or torch
                for d in images:
                    report.transient[d.sop_instance_uid] = embed_failed(exc)
        identity = self.embedder.identity
        own = [d for d in images if owner[d.sop_instance_uid] is None and vectors]
        if own:
            try:
                index(self.index_set, own, vectors, identity, claimer=self.claimer)
                report.done.extend(d.sop_instance_uid for d in own)
            except ModelMismatch:
                raise
            except (RuntimeError, ValueError) as exc:
                for d in own:
                    report.transient[d.sop_instance_uid] = embed_failed(exc)
        for decision in batch.decisions:
            if decision.taken and not vectors:
                continue  # the model failed: the series stays open, decided again later
            mine = [d for d in images if owner[d.sop_instance_uid] is decision and vectors]
            decisions.commit(self.index_set, decision, instance_vectors(mine, vectors),
                             identity=identity, now=time.time(), claimer=self.claimer)
        self._mark(report, batch.attempts)
        return report

    def _mark(self, report: BatchReport, attempts: dict[str, int]) -> None:
        conn, mine = self._conn, self.claimer
        if report.done:
            queue.mark_done(conn, report.done, claimer=mine)
        for uid, reason in report.skipped.items():
            queue.mark_skipped(conn, uid, reason, claimer=mine)
        for uid, reason in report.failed.items():
            log.warning("instance failed: %s: %s", uid, reason)
            queue.mark_failed(conn, uid, reason, claimer=mine)
        for uid, reason in report.transient.items():
            n = attempts.get(uid, self.max_attempts)
            if n >= self.max_attempts:
                queue.mark_failed(conn, uid, f"{reason} (after {n} attempts)", claimer=mine)
            else:
                queue.retry_later(conn, uid, reason, backoff_s=self.backoff_s * 2 ** (n - 1),
                                  claimer=mine)

    # -- the loop ---------------------------------------------------------------------

    def run_once(self) -> int:
        """One batch seen through (claimed instances and the series due now); returns how
        many instances it handled (0: nothing to do now)."""
        batch = self._prepare(set())
        self._finish(batch)
        return batch.handled

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set, decoding the next batch while embedding this one."""
        last_save = time.monotonic()
        current = self._prepare(set())
        try:
            while not stop.is_set():
                if not current.jobs and not current.decisions:
                    if not current.handled and stop.wait(self.poll_interval_s):
                        break
                    current = self._prepare(set())
                    continue
                nxt = self._prepare(current.series)
                self._finish(current)
                current = nxt
                if time.monotonic() - last_save >= self.save_interval_s:
                    self.index_set.save()
                    last_save = time.monotonic()
        finally:
            for f in current.pending:
                if isinstance(f, cf.Future):
                    f.cancel()
            if current.jobs:
                queue.release(self._conn, [job.sop_instance_uid for job in current.jobs],
                              claimer=self.claimer)
            self.index_set.save()

    def close(self) -> None:
        """Stop the decode processes and close the queue connection."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._conn.close()
