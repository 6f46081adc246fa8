"""What the export libraries print goes to the log at DEBUG, not to the node's console.

NNCF draws progress bars (rich, on ``sys.stdout``) and logs through its own stdout
handler; torch's tracer raises warnings; torch's extension loader logs through torch's own
handler when OpenVINO's PyTorch front end first imports it. :func:`quiet` routes all of it
to ``indexer.engines`` at DEBUG for the duration of an export, and puts everything back
afterwards. ``sys.stdout``/``sys.stderr`` are swapped for the duration (the node writes
its own output through logging handlers, which keep their streams).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

__all__ = ["quiet"]

log = logging.getLogger("indexer.engines")

#: loggers with handlers of their own that write straight to the console during export
_NOISY_LOGGERS = ("nncf", "torch.utils.cpp_extension")


class _ToDebug(logging.Handler):
    """Re-logs a library's records on ``indexer.engines`` at DEBUG."""

    def __init__(self, what: str) -> None:
        super().__init__(logging.DEBUG)
        self._what = what

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("%s (%s %s): %s", self._what, record.name, record.levelname,
                  record.getMessage())


@contextlib.contextmanager
def quiet(what: str) -> Iterator[None]:
    """Run the block with library output going to the log at DEBUG (``what`` names it)."""
    saved = []
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [_ToDebug(what)]
        logger.propagate = False
    printed = io.StringIO()
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recorded, \
                contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            warnings.simplefilter("always")
            try:
                yield
            finally:
                caught.extend(recorded)
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate
        for w in caught:
            log.debug("%s (warning): %s: %s", what, w.category.__name__, w.message)
        text = printed.getvalue().strip()
        if text:
            log.debug("%s printed: %s", what, text)
