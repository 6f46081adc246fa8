"""The queue worker: claimed instances through decode ▶ normalise ▶ embed ▶ index.

The stages, each a plain function, read top to bottom in :mod:`indexer.stages`; the
worker claims batches, runs them through, and marks the queue with the outcome.

Decoding and normalisation (the CPU-heavy part) run in a process pool when
``decode_processes > 0`` and, in :meth:`Worker.run`, the next batch is decoded while the
current one is embedded, so the model is fed continuously.

Safe to kill at any moment: vectors are unique per (level, UID) and written in one
transaction, the index files are rebuilt from the catalog when stale, and instances left
``in_progress`` go back to ``pending`` when a worker starts.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import database
from indexer import queue
from indexer._schema import ensure_schema
from indexer.embedder import Embedder
from indexer.index import IndexSet
from indexer.stages import BatchReport, Decoded, decode_and_normalise, process_batch

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    """Takes batches off the work queue and indexes them (one per node process)."""

    def __init__(
        self,
        *,
        db_path: str | os.PathLike[str],
        data_dir: str | os.PathLike[str],
        embedder: Embedder,
        index_set: IndexSet,
        batch_size: int = 32,
        decode_processes: int = 0,
        max_attempts: int = 3,
        backoff_s: float = 5.0,
        poll_interval_s: float = 0.5,
        save_interval_s: float = 30.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if decode_processes < 0:
            raise ValueError(f"decode_processes must not be negative, got {decode_processes}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if backoff_s < 0 or poll_interval_s < 0 or save_interval_s < 0:
            raise ValueError("backoff_s, poll_interval_s and save_interval_s must not be negative")
        self.db_path = Path(db_path)
        self.data_dir = Path(data_dir)
        self.embedder = embedder
        self.index_set = index_set
        self.batch_size = batch_size
        self.decode_processes = decode_processes
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.poll_interval_s = poll_interval_s
        self.save_interval_s = save_interval_s
        # Used by one thread at a time: the one that builds the worker, then the one that
        # runs it (the node builds it at start-up and runs it in its own thread).
        self._conn = database.connect(self.db_path)
        ensure_schema(self._conn)
        index_set.check_model(embedder.identity, embedder.dim)
        recovered = queue.reset_in_progress(self._conn, max_attempts=max_attempts)
        if recovered:
            log.info("worker start: %d interrupted instances back to pending", recovered)
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor | None:
        if self.decode_processes == 0:
            return None
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.decode_processes, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _submit(self, items: Sequence[queue.WorkItem]) -> list[cf.Future[Decoded] | Decoded]:
        pool = self._executor()
        size, crop = self.embedder.image_size, self.embedder.crops_to_square
        paths = [(it.sop_instance_uid, str(self.data_dir / it.path)) for it in items]
        out: list[cf.Future[Decoded] | Decoded] = []
        for uid, p in paths:
            if pool is None:
                out.append(decode_and_normalise(uid, p, size, crop))
            else:
                out.append(pool.submit(decode_and_normalise, uid, p, size, crop))
        return out

    def _collect(
        self, items: Sequence[queue.WorkItem], pending: list[cf.Future[Decoded] | Decoded]
    ) -> list[Decoded]:
        out: list[Decoded] = []
        broken = False
        for it, f in zip(items, pending, strict=True):
            if isinstance(f, Decoded):
                out.append(f)
                continue
            try:
                out.append(f.result())
            except BrokenProcessPool as exc:
                broken = True
                out.append(Decoded(it.sop_instance_uid, transient=f"decode process died: {exc}"))
        if broken and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return out

    def _finish(self, items: Sequence[queue.WorkItem], decoded: Sequence[Decoded]) -> BatchReport:
        report = process_batch(decoded, embedder=self.embedder, index_set=self.index_set)
        self._mark(items, report)
        return report

    def _mark(self, items: Sequence[queue.WorkItem], report: BatchReport) -> None:
        conn = self._conn
        if report.done:
            queue.mark_done(conn, report.done)
        for uid, reason in report.skipped.items():
            queue.mark_skipped(conn, uid, reason)
        for uid, reason in report.failed.items():
            log.warning("instance failed: %s: %s", uid, reason)
            queue.mark_failed(conn, uid, reason)
        attempts = {it.sop_instance_uid: it.attempts for it in items}
        for uid, reason in report.transient.items():
            n = attempts.get(uid, self.max_attempts)
            if n >= self.max_attempts:
                queue.mark_failed(conn, uid, f"{reason} (after {n} attempts)")
            else:
                queue.retry_later(conn, uid, reason, backoff_s=self.backoff_s * 2 ** (n - 1))

    def run_once(self) -> int:
        """Claim one batch and see it through; returns how many instances it held."""
        items = queue.claim(self._conn, self.batch_size)
        if not items:
            return 0
        self._finish(items, self._collect(items, self._submit(items)))
        return len(items)

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set, decoding the next batch while embedding this one."""
        last_save = time.monotonic()
        current = queue.claim(self._conn, self.batch_size)
        pending: list[cf.Future[Decoded] | Decoded] = self._submit(current) if current else []
        try:
            while not stop.is_set():
                if not current:
                    if stop.wait(self.poll_interval_s):
                        break
                    current = queue.claim(self._conn, self.batch_size)
                    pending = self._submit(current) if current else []
                    continue
                nxt = queue.claim(self._conn, self.batch_size)
                nxt_pending = self._submit(nxt) if nxt else []
                self._finish(current, self._collect(current, pending))
                current, pending = nxt, nxt_pending
                if time.monotonic() - last_save >= self.save_interval_s:
                    self.index_set.save()
                    last_save = time.monotonic()
        finally:
            if current:
                for f in pending:
                    if isinstance(f, cf.Future):
                        f.cancel()
                queue.release(self._conn, [it.sop_instance_uid for it in current])
            self.index_set.save()

    def close(self) -> None:
        """Stop the decode processes and close the queue connection."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._conn.close()
