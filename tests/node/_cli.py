"""The ``precedent`` command as an admin runs it: a subprocess with a clean environment
(its own HOME, no PRECEDENT_* variables, no hub), from any folder; and a real
``precedent serve`` in a subprocess, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests._peers import free_port

REPO = Path(__file__).parents[2]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an admin's shell: HOME of its own, the repository importable,
    no PRECEDENT_* settings, the hub offline, fp32 and no decoding processes (fast)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PRECEDENT_", "HF_", "XDG_"))}
    env.update({"HOME": str(home), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
                "HF_HOME": str(home / "hf"), "PRECEDENT_MODEL__PRECISION": "fp32",
                "PRECEDENT_WORKER__DECODE_PROCESSES": "0"})
    env.update(extra)
    return env


def cli(*args: str, home: Path, cwd: Path | None = None, timeout: float = 300,
        **env: str) -> subprocess.CompletedProcess[str]:
    """``precedent ARGS`` from ``cwd`` (default: ``home``)."""
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or home,
                          env=clean_env(home, **env))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``precedent: …`` error line a failed command printed (and nothing like a
    traceback)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    notes = ("precedent: data folder ", "precedent: through ")
    lines = [line for line in result.stderr.splitlines()
             if line.startswith("precedent: ") and not line.startswith(notes)]
    assert len(lines) == 1, result.stderr
    return lines[0]


@dataclass
class Serve:
    """``precedent serve`` in a subprocess; its log in ``log_path``."""

    process: subprocess.Popen[str]
    log_path: Path
    http_port: int
    dimse_port: int
    _log: Any = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as r:
                return dict(json.load(r))
        except urllib.error.HTTPError as exc:
            return dict(json.load(exc))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait(self, what: str = "up", timeout: float = 120.0) -> dict[str, Any]:
        """Wait until /health answers (``up``) or says the model is ``ready``."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited {self.process.returncode}:\n{self.log()}")
            body = self.health()
            if body is not None and (what == "up" or body["model"]["status"] == what):
                return body
            time.sleep(0.2)
        raise TimeoutError(f"serve not {what} after {timeout} s: {body}\n{self.log()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        return self.process.returncode


def start_serve(*args: str, home: Path, cwd: Path | None = None, dimse_port: int | None = None,
                http_port: int | None = None, host: str | None = "127.0.0.1",
                **env: str) -> Serve:
    """``precedent serve`` with DIMSE and HTTP on free ports (or those given), on
    ``host`` (None: the defaults, DIMSE on every address, HTTP on loopback)."""
    dimse_port = dimse_port or free_port()
    http_port = http_port or free_port()
    log_path = home / f"serve-{http_port}.log"
    log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed by Serve.stop
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "serve", *(["--host", host] if host else []),
         "--dimse-port", str(dimse_port), "--http-port", str(http_port), *args],
        stdout=log, stderr=subprocess.STDOUT, text=True, cwd=cwd or home,
        env=clean_env(home, **env))
    return Serve(process, log_path, http_port, dimse_port, log)
