"""Durable, atomic file placement under the data folder, with a journal in ``tmp/``.

An instance's bytes reach ``dicom/<study>/<series>/`` in two steps (the ingest's order
is in :mod:`node.storage.ingest`):

1. :func:`write_part` writes them to ``tmp/<study>+<series>+<sop>+<token>.part`` and
   fsyncs the file. The part's name says where the file goes;
2. :func:`link_into_place` hard-links the part to ``dicom/<study>/<series>/<sop>.dcm``
   (``<sop>.v<token>.dcm`` when that name is taken: a replacement, or a concurrent
   sender; the ``v`` never occurs in a UID) and fsyncs the folder. The part stays: it
   is the journal entry that says "a file was put in place whose catalog row may not
   be committed yet".

The ingest removes the part once the row is committed (or the file, when it is not);
after a crash :func:`journal` lists what is left so the ingest can settle each entry.
A part that was never linked (one link) is an interrupted write: removed at once.

``tmp/`` itself is not fsynced for each part (one fsync less per instance): on file
systems that journal metadata in order (ext4, XFS) the part's entry is durable no later
than the link made after it, whose folder is fsynced. Elsewhere a power loss at that
moment could leave a file no row names (never a row without its file).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from node.errors import OutOfResources

__all__ = [
    "JournalEntry",
    "copies",
    "free_bytes",
    "instance_relpath",
    "journal",
    "link_into_place",
    "remove_leftovers",
    "remove_quietly",
    "write_part",
]

_SEPARATOR = "+"  # never in a UID (digits and dots), never in a token (hex)
_SUFFIX = ".part"


def instance_relpath(study_uid: str, series_uid: str, sop_uid: str,
                     token: str | None = None) -> PurePosixPath:
    """Where an instance lives, relative to the data folder (UIDs validated before);
    ``token`` names a second copy of the same SOP Instance UID."""
    name = f"{sop_uid}.v{token}.dcm" if token else f"{sop_uid}.dcm"
    return PurePosixPath("dicom", study_uid, series_uid, name)


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


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One part in ``tmp/``: the instance it holds and where it goes."""

    part: Path
    study_uid: str
    series_uid: str
    sop_uid: str
    token: str

    def candidates(self) -> tuple[PurePosixPath, PurePosixPath]:
        """The two names :func:`link_into_place` may have given the file."""
        return (instance_relpath(self.study_uid, self.series_uid, self.sop_uid),
                instance_relpath(self.study_uid, self.series_uid, self.sop_uid, self.token))

    @property
    def linked(self) -> bool:
        """True once the part was linked into place (it has a second name)."""
        try:
            return self.part.stat().st_nlink > 1
        except FileNotFoundError:
            return False


def write_part(data_dir: Path, uids: tuple[str, str, str], data: bytes, *,
               reserve: int) -> JournalEntry:
    """Write ``data`` to a new part for ``uids`` (study, series, SOP instance) and fsync
    it.

    Raises :class:`OutOfResources` when the write would leave less than ``reserve``
    bytes free or the disk fills up; nothing is left behind then.
    """
    if free_bytes(data_dir) - len(data) < reserve:
        raise OutOfResources("not enough free disk space on the node (below the reserve)")
    tmp_dir = data_dir / "tmp"
    token = secrets.token_hex(4)
    study_uid, series_uid, sop_uid = uids
    part = tmp_dir / _SEPARATOR.join((study_uid, series_uid, sop_uid, token + _SUFFIX))
    try:
        tmp_dir.mkdir(exist_ok=True)
        try:
            with open(part, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    except OSError as exc:
        if _disk_full(exc):
            raise OutOfResources("the node's disk is full") from exc
        raise
    return JournalEntry(part, study_uid, series_uid, sop_uid, token)


def link_into_place(data_dir: Path, entry: JournalEntry) -> PurePosixPath:
    """Give the part its name under ``dicom/`` (never replacing a file) and fsync the
    folder; return that name, relative to ``data_dir``."""
    first, second = entry.candidates()
    try:
        _make_dirs_durably((data_dir / first).parent)
        for relpath in (first, second):
            try:
                os.link(entry.part, data_dir / relpath)
            except FileExistsError:
                continue
            _fsync_dir((data_dir / relpath).parent)
            return relpath
    except OSError as exc:
        if _disk_full(exc):
            raise OutOfResources("the node's disk is full") from exc
        raise
    raise FileExistsError(f"both names of instance {entry.sop_uid} are taken")


def copies(data_dir: Path, study_uid: str, series_uid: str,
           sop_uid: str) -> list[PurePosixPath]:
    """Every file under ``dicom/`` named for this instance (``<sop>.dcm``, ``<sop>.v…``)."""
    folder = PurePosixPath("dicom", study_uid, series_uid)
    found = []
    for path in (data_dir / folder).glob(f"{sop_uid}.*"):
        rest = path.name[len(sop_uid):]
        if rest == ".dcm" or (rest.startswith(".v") and rest.endswith(".dcm")
                              and rest[2:-4].isalnum()):
            found.append(folder / path.name)
    return sorted(found)


def remove_quietly(path: Path) -> bool:
    """Remove ``path`` if it is there; True when something was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def journal(data_dir: Path) -> Iterator[JournalEntry]:
    """The parts left in ``tmp/`` (by an interrupted ingest, or one in progress)."""
    for part in sorted((data_dir / "tmp").glob(f"*{_SUFFIX}")):
        fields = part.name[: -len(_SUFFIX)].split(_SEPARATOR)
        if len(fields) == 4:
            yield JournalEntry(part, *fields)


def remove_leftovers(data_dir: Path) -> int:
    """Delete the parts of writes a crash interrupted before they were linked into place
    (and parts of an older layout); return how many. Linked parts are journal entries:
    :func:`node.storage.recovery.settle_journal` settles those."""
    count = 0
    named = {entry.part for entry in journal(data_dir)}
    for part in (data_dir / "tmp").glob(f"*{_SUFFIX}"):
        try:
            if part in named and part.stat().st_nlink > 1:
                continue
        except FileNotFoundError:
            continue
        count += remove_quietly(part)
    return count
