"""Running ``precedent`` as a user does, in a subprocess, against a node of the test."""

from __future__ import annotations

import os
import subprocess
import sys

from node.data_folder import ADMIN_TOKEN_FILE
from tests.conftest import RunningNode

__all__ = ["precedent"]


def precedent(*args: str, node: RunningNode | None = None, timeout: float = 120.0,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m node ARGS``; with ``node``, pointed at its data folder (the command
    finds the node through the folder's lock, and its admin token in the folder, or, when
    the test configured one, in the environment as the node's settings file would give
    it)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PRECEDENT_")}
    environ.update(env or {})
    extra: list[str] = []
    if node is not None:
        extra = ["--data-dir", str(node.data_dir)]
        configured = not (node.data_dir / ADMIN_TOKEN_FILE).is_file()
        if configured and node.admin_token:
            environ["PRECEDENT_HTTP__ADMIN_TOKEN"] = node.admin_token
    return subprocess.run([sys.executable, "-m", "node", *args, *extra], capture_output=True,
                          text=True, timeout=timeout, env=environ)
