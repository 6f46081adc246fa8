"""What the node logs, captured for tests that check which level it reaches (patient
data only at debug level: docs/api.md).

Fixture ``node_log`` (registered in ``tests/conftest.py``): every record logged in this
process while the test runs, at every level (the root logger is set to DEBUG for the
test), formatted as a log handler would write it, traceback included::

    def test_no_names_above_debug(make_node, node_log):
        ...  # drive the node
        assert node_log.lines_with("Secret", above=logging.DEBUG) == []
        assert node_log.lines_with("Secret", above=logging.NOTSET)  # it was seen

The node runs in-process (``make_node``), so its threads' records arrive here too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

__all__ = ["CapturedLog", "node_log"]

_FORMAT = logging.Formatter("%(levelname)s %(name)s %(message)s")


class CapturedLog(logging.Handler):
    """A handler that keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self._records: list[logging.LogRecord] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self._records.append(record)

    @property
    def records(self) -> list[logging.LogRecord]:
        with self._guard:
            return list(self._records)

    def lines(self, *, above: int = logging.DEBUG) -> list[str]:
        """Each record over level ``above``, formatted (message, traceback, stack)."""
        return [_FORMAT.format(r) for r in self.records if r.levelno > above]

    def lines_with(self, needle: str, *, above: int = logging.DEBUG) -> list[str]:
        """The formatted records over level ``above`` that contain ``needle``."""
        return [line for line in self.lines(above=above) if needle in line]


@pytest.fixture
def node_log() -> Iterator[CapturedLog]:
    """Every log record of the test, at every level (see the module docstring)."""
    root = logging.getLogger()
    handler = CapturedLog()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
