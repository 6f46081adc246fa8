"""Storage and catalog: durable files and their journal, the catalog's tables
(``connect`` opens the catalog through :mod:`database` and creates them), the ingest
with its integrity check and crash recovery, study stability, deletion
(``node.storage.deletion``) and AE administration (``node.storage.aes``)."""

from node.storage._local import ThreadConnections
from node.storage._schema import TABLES, connect
from node.storage.ingest import Ingest, StoredInstance, StoreOutcomeValues, parse_part10
from node.storage.stability import StabilityMonitor

__all__ = [
    "TABLES",
    "Ingest",
    "StabilityMonitor",
    "StoreOutcomeValues",
    "StoredInstance",
    "ThreadConnections",
    "connect",
    "parse_part10",
]
