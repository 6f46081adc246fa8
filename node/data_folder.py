"""One process owns a data folder: the lock, the owner's card, the admin token file.

``data_dir/lock`` is locked exclusively (``fcntl.flock``) by whoever writes the folder:
``precedent serve`` for as long as it runs, or an administrative command while the
node is down. The file holds a JSON card naming the owner (pid, ``node`` or
``command``, the node's HTTP address and where its admin token is), so that a second
``serve`` refuses naming the running pid, and commands find the running node to act
through its admin API (:mod:`node.admin_client`). The lock goes with the process: a
killed owner leaves a card nobody holds, which counts for nothing.

On a PostgreSQL catalog the storage root is shared by several ``serve`` processes (and
workers), so no process holds ``data_dir/lock``: each ``serve`` holds a card of its own,
``data_dir/nodes/<host>-<pid>.lock`` (:meth:`DataFolderLock.acquire_card`), and
:func:`current_owner` finds a running node there when nobody holds the folder's lock
(one on this machine first), so that commands still act through it.

``data_dir/admin-token`` (mode 0600) is the admin bearer token the node made at its
first start when ``[http] admin_token`` is not set; the token itself is never logged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from node.errors import DataFolderBusy, StartupError

__all__ = [
    "ADMIN_TOKEN_FILE",
    "LOCK_FILE",
    "NODES_DIR",
    "DataFolderLock",
    "Owner",
    "OwnerRoleValues",
    "admin_token",
    "current_owner",
    "prepare",
    "stored_admin_token",
]

LOCK_FILE = "lock"
NODES_DIR = "nodes"
ADMIN_TOKEN_FILE = "admin-token"
#: how long acquiring waits for a lock held only for a moment (a reader's check, an
#: owner that is writing its card)
_ACQUIRE_S = 2.0


class OwnerRoleValues(str, Enum):
    """Who holds a data folder's lock."""

    NODE = "node"  #: ``precedent serve``: administrative commands go through its admin API
    COMMAND = "command"  #: an administrative command working while the node is down


@dataclass(frozen=True)
class Owner:
    """The card in ``data_dir/lock``."""

    pid: int
    role: OwnerRoleValues
    #: what holds it: ``precedent serve`` or the command line of a command
    command: str
    #: the node's HTTP base URL, as a client on this machine reaches it
    http_url: str | None = None
    #: the admin token file the node made, when ``[http] admin_token`` is not set
    admin_token_file: str | None = None

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "role": self.role.value}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Owner:
        token_file = data.get("admin_token_file")
        url = data.get("http_url")
        return cls(pid=int(str(data["pid"])), role=OwnerRoleValues(str(data["role"])),
                   command=str(data.get("command", "")),
                   http_url=str(url) if url else None,
                   admin_token_file=str(token_file) if token_file else None)

    def describe(self) -> str:
        if self.role is OwnerRoleValues.NODE:
            where = f" at {self.http_url}" if self.http_url else ""
            return f"the node (precedent serve, pid {self.pid}{where})"
        return f"`{self.command}` (pid {self.pid})"


def prepare(data_dir: Path) -> None:
    """Create the data folder when needed and check the node can write there; a
    :class:`StartupError` naming ``node.data_dir`` and what to change otherwise."""
    setting = f"setting 'node.data_dir' = {data_dir}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StartupError(f"{setting}: a file is in the way (not a folder); choose another "
                           "folder or move the file") from None
    except NotADirectoryError:
        raise StartupError(f"{setting}: a file is in the way on its path (a part of it is "
                           "not a folder); choose another folder") from None
    except PermissionError:
        raise StartupError(f"{setting}: the folder cannot be created (permission denied); "
                           "create it and give this user write access, or choose another "
                           "folder") from None
    except OSError as exc:
        raise StartupError(f"{setting}: the folder cannot be created "
                           f"({exc.strerror})") from None
    probe = data_dir / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (
            exc.strerror or str(exc))
        raise StartupError(f"{setting}: this user cannot write there ({reason}); give it "
                           "write access, or choose another folder") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_card(fd: int, tries: int = 20) -> Owner | None:
    for _ in range(tries):  # the owner may be writing its card this very moment
        raw = os.pread(fd, 65536, 0)
        try:
            return Owner.from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return None


def current_owner(data_dir: Path) -> Owner | None:
    """Who holds the data folder's lock now, else a node holding its own card in a
    shared folder (one on this machine first); None when nobody does (or no folder)."""
    return _lock_holder(data_dir / LOCK_FILE) or _card_holder(data_dir)


def _card_holder(data_dir: Path) -> Owner | None:
    """A running node of a shared folder (``data_dir/nodes``), this machine's first."""
    cards = sorted((data_dir / NODES_DIR).glob("*.lock"),
                   key=lambda p: not p.name.startswith(f"{socket.gethostname()}-"))
    for card in cards:
        owner = _lock_holder(card)
        if owner is not None and owner.role is OwnerRoleValues.NODE:
            return owner
    return None


def _lock_holder(path: Path) -> Owner | None:
    """Who holds the lock on ``path`` now; None when nobody does (or no file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_card(fd) or Owner(pid=0, role=OwnerRoleValues.COMMAND,
                                           command="an unknown process")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class DataFolderLock:
    """The exclusive lock on ``data_dir/lock``, held until :meth:`release`."""

    def __init__(self, data_dir: Path, fd: int, owner: Owner, card: Path | None = None) -> None:
        self.data_dir = data_dir
        self.owner = owner
        self._fd: int | None = fd
        self._card = card  # a node's own card in a shared folder: removed at release

    @classmethod
    def acquire_card(cls, data_dir: Path, owner: Owner) -> DataFolderLock:
        """A ``serve`` process's own card in a shared folder (PostgreSQL catalog):
        ``data_dir/nodes/<host>-<pid>.lock``, locked for as long as it runs. The folder
        must exist (:func:`prepare`)."""
        folder = data_dir / NODES_DIR
        path = folder / f"{socket.gethostname()}-{owner.pid}.lock"
        try:
            folder.mkdir(exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(f"setting 'node.data_dir' = {data_dir}: the node's card "
                               f"cannot be written ({exc.strerror})") from None
        fcntl.flock(fd, fcntl.LOCK_EX)  # this process's own file: nobody else holds it
        lock = cls(data_dir, fd, owner, card=path)
        lock.write(owner)
        return lock

    @classmethod
    def acquire(cls, data_dir: Path, owner: Owner) -> DataFolderLock:
        """Take the lock and write ``owner``'s card, or raise :class:`DataFolderBusy`
        naming the process that holds it. The folder must exist (:func:`prepare`)."""
        path = data_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(f"setting 'node.data_dir' = {data_dir}: its lock file cannot "
                               f"be opened ({exc.strerror})") from None
        deadline = time.monotonic() + _ACQUIRE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_card(fd, tries=1)
                if (holder is not None and _alive(holder.pid)) or time.monotonic() > deadline:
                    os.close(fd)
                    who = holder.describe() if holder is not None else "another process"
                    raise DataFolderBusy(
                        f"the data folder {data_dir} is in use by {who}; one process owns "
                        "a data folder: stop that one first, or give this one another "
                        "folder (--data-dir)", owner=holder) from None
                time.sleep(0.05)  # a reader checking the lock, or a card left by the dead
        lock = cls(data_dir, fd, owner)
        lock.write(owner)
        return lock

    def write(self, owner: Owner) -> None:
        """Replace the card (e.g. once the node knows its HTTP address)."""
        if self._fd is None:
            raise RuntimeError("the data folder lock was released")
        data = json.dumps(owner.as_json()).encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)
        self.owner = owner

    def release(self) -> None:
        """Give the folder up (the card stays; nobody holds it). Idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        if self._card is not None:
            with contextlib.suppress(OSError):
                self._card.unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> DataFolderLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def stored_admin_token(data_dir: Path) -> str | None:
    """The token in ``data_dir/admin-token``, if there is one and this user may read it."""
    try:
        token = (data_dir / ADMIN_TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def admin_token(data_dir: Path, configured: str | None) -> tuple[str, Path | None]:
    """The admin token the node requires, and the file it is kept in (None when it is
    configured). Without a configured one, the folder's ``admin-token`` is read, or made
    (random, mode 0600) at the first start."""
    if configured is not None:
        return configured, None
    path = data_dir / ADMIN_TOKEN_FILE
    existing = stored_admin_token(data_dir)
    if existing is not None:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return existing, path
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return token, path
