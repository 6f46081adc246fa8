"""Running ``precedent`` as a user does, in a subprocess, against a node of the test."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import RunningNode

__all__ = ["precedent"]


def precedent(*args: str, node: RunningNode | None = None, timeout: float = 120.0,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m node ARGS``; with ``node``, pointed at its data folder, HTTP port and
    admin token (as its own settings file would)."""
    environ = {**os.environ, **(env or {})}
    extra: list[str] = []
    if node is not None:
        extra = ["--data-dir", str(node.data_dir)]
        environ["PRECEDENT_HTTP__PORT"] = str(node.settings.http.port)
        if node.settings.http.admin_token:
            environ["PRECEDENT_HTTP__ADMIN_TOKEN"] = node.settings.http.admin_token
    return subprocess.run([sys.executable, "-m", "node", *args, *extra], capture_output=True,
                          text=True, timeout=timeout, env=environ)
