"""A really small file system (a 4 MiB tmpfs) for the full-disk tests of the REST side.

It is mounted here when this process may (root); else the test runs again inside a user
and mount namespace of its own (``unshare -Urm``), where an unprivileged user may mount
a tmpfs. Where neither works the test skips, except under CI (``CI`` set), where it
fails: CI must run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

__all__ = ["on_small_fs"]

#: set in the re-run inside a mount namespace of its own: where the small file system is
_SMALL_FS = "PRECEDENT_TEST_WEB_SMALL_FS"
_MOUNT = 'mount -t tmpfs -o size=4m tmpfs "$1"'


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def on_small_fs(test_id: str, tmp_path: Path, body: Callable[[Path], None]) -> None:
    """Run ``body(mount)`` with ``mount`` a fresh 4 MiB file system; ``test_id`` is the
    calling test's node id (``tests/web/…py::test_…``), for the re-run."""
    premounted = os.environ.get(_SMALL_FS)
    if premounted:  # the re-run, inside the namespace that mounted it
        body(Path(premounted))
        return
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode == 0:
        try:
            body(mount)
        finally:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        return
    why = mounted.stderr.strip() or "mount failed"
    if shutil.which("unshare") is None:
        _cannot(f"{why}; unshare (util-linux) is not installed")
        return
    namespace = ["unshare", "-Urm", "--propagation", "private", "sh", "-c"]
    probe = subprocess.run([*namespace, _MOUNT, "sh", str(mount)], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        _cannot(f"{why}; unshare -Urm cannot mount either: {probe.stderr.strip()}")
        return
    rerun = subprocess.run(
        [*namespace, _MOUNT + ' && shift && exec "$@"', "sh", str(mount), sys.executable,
         "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'rerun'}",
         test_id],
        capture_output=True, text=True, timeout=240, env={**os.environ, _SMALL_FS: str(mount)})
    assert rerun.returncode == 0 and "1 passed" in rerun.stdout, \
        rerun.stdout[-4000:] + rerun.stderr[-2000:]


def _cannot(why: str) -> None:
    message = f"cannot mount a small file system here ({why})"
    if _in_ci():
        pytest.fail(message + ": CI must run this test (run it as root, or allow "
                    "unprivileged user namespaces)")
    pytest.skip(message)
