"""Durable, atomic file writes under the data folder."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from node.errors import OutOfResources

__all__ = ["free_bytes", "instance_relpath", "remove_leftovers", "write_durably"]


def instance_relpath(study_uid: str, series_uid: str, sop_uid: str) -> PurePosixPath:
    """Where an instance lives, relative to the data folder (UIDs validated before)."""
    return PurePosixPath("dicom", study_uid, series_uid, f"{sop_uid}.dcm")


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs_durably(folder: Path) -> None:
    """Create ``folder`` and the missing folders above it, fsyncing each new entry's
    parent, so the path of an acknowledged instance survives a power loss too."""
    if folder.is_dir():
        return
    _make_dirs_durably(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        return  # another association made it at the same moment
    _fsync_dir(folder.parent)


def write_durably(data_dir: Path, relpath: PurePosixPath, data: bytes, *, reserve: int) -> int:
    """Write ``data`` to ``data_dir/relpath``: temporary file, fsync, rename, fsync folder.

    Raises :class:`OutOfResources` when the write would leave less than ``reserve``
    bytes free or the disk fills up; nothing is left behind then.
    """
    target = data_dir / relpath
    tmp_dir = data_dir / "tmp"
    if free_bytes(data_dir) - len(data) < reserve:
        raise OutOfResources("not enough free disk space on the node (below the reserve)")
    try:
        _make_dirs_durably(target.parent)
        tmp_dir.mkdir(exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutOfResources("the node's disk is full") from exc
        raise
    return len(data)


def remove_leftovers(data_dir: Path) -> int:
    """Delete temporary files of writes a crash interrupted; return how many."""
    count = 0
    for part in (data_dir / "tmp").glob("*.part"):
        part.unlink(missing_ok=True)
        count += 1
    return count
