"""Storage and catalog: durable files, the SQLite catalog, AE administration."""

from node.storage._local import ThreadConnections
from node.storage._schema import connect
from node.storage.ingest import Ingest, StoredInstance, StoreOutcomeValues, parse_part10
from node.storage.stability import StabilityMonitor

__all__ = [
    "Ingest",
    "StabilityMonitor",
    "StoreOutcomeValues",
    "StoredInstance",
    "ThreadConnections",
    "connect",
    "parse_part10",
]
