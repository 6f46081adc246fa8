"""pynetdicom's logging as the node configures it: nothing from a data set above debug.

pynetdicom logs the whole identifier of every C-FIND, C-GET and C-MOVE request at INFO,
and data element dumps or exception texts (which may quote values) at ERROR. The node
promises patient data only at debug, so:

- the identifier dumps are switched off (``_config.LOG_REQUEST_IDENTIFIERS`` and
  ``LOG_RESPONSE_IDENTIFIERS``, pynetdicom's documented switches); the node's own
  handlers log the identifier at debug instead;
- every record of ``pynetdicom.dsutils`` (encoding and decoding of data sets), and every
  record with a traceback from the service classes, the association and the DUL, is
  demoted to debug. The line pynetdicom logs before such a traceback ("Exception in
  handler bound to …") stays at its level.
"""

from __future__ import annotations

import logging

from pynetdicom import _config

__all__ = ["configure_pynetdicom_logging"]

#: loggers whose every record may quote a data element's value
_DATA_SET_LOGGERS = ("pynetdicom.dsutils",)
#: loggers whose tracebacks may quote values
_TRACEBACK_LOGGERS = ("pynetdicom.service_class", "pynetdicom.association",
                      "pynetdicom.dul", "pynetdicom.fsm")


class _DemoteToDebug(logging.Filter):
    """Turns a record into a DEBUG record (dropped unless its logger logs DEBUG)."""

    def __init__(self, *, only_tracebacks: bool) -> None:
        super().__init__()
        self.only_tracebacks = only_tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        if self.only_tracebacks and not record.exc_info:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def configure_pynetdicom_logging() -> None:
    """Apply the node's rules to pynetdicom's logging (idempotent)."""
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    for names, only_tracebacks in ((_DATA_SET_LOGGERS, False), (_TRACEBACK_LOGGERS, True)):
        for name in names:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _DemoteToDebug) for f in logger.filters):
                logger.addFilter(_DemoteToDebug(only_tracebacks=only_tracebacks))
