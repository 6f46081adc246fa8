"""What a crash leaves of a store, settled at the next start.

The ingest (:mod:`node.storage.ingest`) keeps each store's bytes in
``tmp/<study>+<series>+<sop>+<token>.part`` until its catalog row is committed
(:mod:`node.storage.files`). A part still there when an ``Ingest`` is built belongs to a
store a crash interrupted, unless another ``Ingest`` (another process) is using the
folder: each holds a shared lock on ``tmp/ingest.lock`` while it lives
(:class:`IngestLease`), and the journal is settled only under the exclusive lock.

Settling a part (:func:`settle_journal`):

- never linked into ``dicom/`` (one link): an interrupted write, removed;
- linked, and the instance's row names its file: committed. The part goes, and so does
  any other copy of the instance (the file a replacement superseded);
- linked, and no row names its file: not committed. The file goes with the part (the
  row, if any, still names the previous copy, which stays).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from database import Connection
from node.storage.files import copies, journal, remove_quietly

__all__ = ["IngestLease", "settle_journal"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class IngestLease:
    """A shared lock on ``data_dir/tmp/ingest.lock`` for as long as an ``Ingest`` uses
    the folder (released by :meth:`close`, or when the process ends)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._file: IO[bytes] | None = open(  # noqa: SIM115 - held while the lease lives
            self.data_dir / "tmp" / "ingest.lock", "ab")

    def when_alone(self, action: Callable[[], _T], *, otherwise: _T) -> _T:
        """Run ``action`` under the exclusive lock when no other lease holds the folder;
        else return ``otherwise``. The shared lock is held again afterwards."""
        assert self._file is not None, "the lease was closed"
        fd = self._file.fileno()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another ingest uses %s: its journal is left to it", self.data_dir)
            fcntl.flock(fd, fcntl.LOCK_SH)
            return otherwise
        try:
            return action()
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return False


def settle_journal(data_dir: Path, conn: Connection) -> int:
    """Settle every part left in ``data_dir/tmp`` (see the module); return how many.
    Only while no store runs on the folder (:meth:`IngestLease.when_alone`)."""
    settled = 0
    for entry in journal(data_dir):
        settled += 1
        if not entry.linked:
            remove_quietly(entry.part)
            continue
        row = conn.execute("SELECT path FROM instances WHERE sop_instance_uid = ?",
                           (entry.sop_uid,)).fetchone()
        kept = None if row is None else str(row[0])
        ours = [r for r in entry.candidates() if _same_file(data_dir / r, entry.part)]
        committed = kept is not None and kept in {str(r) for r in ours}
        if committed:
            doomed = [r for r in copies(data_dir, entry.study_uid, entry.series_uid,
                                        entry.sop_uid) if str(r) != kept]
        else:
            doomed = ours
        for relpath in doomed:
            remove_quietly(data_dir / relpath)
        remove_quietly(entry.part)
        log.warning("settled an interrupted store: instance=%s %s", entry.sop_uid,
                    "kept (its row was committed)" if committed else "removed (no row)")
    return settled
