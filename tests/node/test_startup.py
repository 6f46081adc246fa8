"""Start-up failures stop the node with one line naming the setting and its value, exit
status 2, no traceback; the node starts all its listeners or none."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.errors import StartupError
from node.settings import Settings, load_settings
from node.supervisor import Node
from tests._peers import free_port
from tests.node._cli import clean_env, cli, one_line_error


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    """A port something else listens on (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def _serve(home: Path, data_dir: Path, dimse_port: int, http_port: int
           ) -> subprocess.CompletedProcess[str]:
    return cli("serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--dimse-port",
               str(dimse_port), "--http-port", str(http_port), "--model",
               "local-dir:/nonexistent", home=home, timeout=120)


def _settings(data_dir: Path, dimse_port: int, http_port: int) -> Settings:
    return load_settings(None, {
        "node": {"host": "127.0.0.1", "dimse_port": dimse_port, "data_dir": data_dir},
        "http": {"host": "127.0.0.1", "port": http_port},
        "model": {"name": "local-dir:/nonexistent"},
    })


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_dimse_port_in_use_is_one_line_and_nothing_listens(tmp_path: Path) -> None:
    http_port = free_port()
    with _taken_port() as taken:
        line = one_line_error(_serve(tmp_path, tmp_path / "data", taken, http_port))
        assert line == (f"precedent: setting 'node.dimse_port' = {taken}: the port is in use "
                        "on 127.0.0.1 (another program, or another node, listens there); "
                        "stop it or choose another port")
        # in process: the HTTP socket it had bound is closed again, the folder given up
        node = Node(_settings(tmp_path / "data", taken, http_port))
        with pytest.raises(StartupError, match=r"node\.dimse_port"):
            node.start()
        assert _free(http_port)
    Node(_settings(tmp_path / "data", free_port(), free_port())).stop()  # folder free


def test_http_port_in_use_stops_start_up_before_dimse_listens(tmp_path: Path) -> None:
    """Before: logged while the node went on DIMSE-only."""
    dimse_port = free_port()
    with _taken_port() as taken:
        line = one_line_error(_serve(tmp_path, tmp_path / "data", dimse_port, taken))
        assert line.startswith(f"precedent: setting 'http.port' = {taken}: the port is in use")
        node = Node(_settings(tmp_path / "data", dimse_port, taken))
        with pytest.raises(StartupError, match=r"http\.port"):
            node.start()
        assert _free(dimse_port)


def test_a_data_folder_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    line = one_line_error(_serve(tmp_path, a_file, free_port(), free_port()))
    assert line.startswith(f"precedent: setting 'node.data_dir' = {a_file}: a file is in "
                           "the way (not a folder)")
    under = a_file / "data"
    line = one_line_error(_serve(tmp_path, under, free_port(), free_port()))
    assert line.startswith(f"precedent: setting 'node.data_dir' = {under}: a file is in the "
                           "way on its path")


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def test_a_data_folder_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    """A read-only file system (a tmpfs mounted read-only in a mount namespace of the
    serve process's own: no root rights needed, and root cannot write there either)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if shutil.which("unshare") is None:
        if _ci():
            pytest.fail("unshare (util-linux) is needed for this test")
        pytest.skip("unshare (util-linux) is not installed")
    mount = 'mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@"'
    result = subprocess.run(
        ["unshare", "-Urm", "--propagation", "private", "sh", "-c", mount, "sh", str(folder),
         sys.executable, "-m", "node", "serve", "--data-dir", str(folder), "--host",
         "127.0.0.1", "--dimse-port", str(free_port()), "--http-port", str(free_port()),
         "--model", "local-dir:/nonexistent"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env(tmp_path))
    if "mount" in result.stderr and "precedent" not in result.stderr:
        if _ci():
            pytest.fail(f"cannot mount a read-only tmpfs: {result.stderr}")
        pytest.skip(f"cannot mount a read-only tmpfs: {result.stderr}")
    line = one_line_error(result)
    assert line.startswith(f"precedent: setting 'node.data_dir' = {folder}: this user cannot "
                           "write there (")
    assert line.endswith("give it write access, or choose another folder")
