"""Several processes on one PostgreSQL catalog: the process registry (who is alive, by
the advisory lock each holds), the maintenance leader (the claims of the dead handed
back), and ``precedent worker`` (the indexer alone). See docs/postgres.md §7–§9."""

from node.cluster.registry import (
    ProcessKindValues,
    ProcessRecord,
    Registration,
    alive_process_ids,
    dead_process_ids,
    list_processes,
)

__all__ = [
    "ProcessKindValues",
    "ProcessRecord",
    "Registration",
    "alive_process_ids",
    "dead_process_ids",
    "list_processes",
]
