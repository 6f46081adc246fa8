"""The index: one usearch HNSW index per level over the catalog's ``vectors`` table.

- Keys are ``vectors.key`` (the table's integer primary key). The table is the truth: each
  index is saved atomically with a sidecar naming the model identity and the catalog
  *generation* it reflects; at start an index whose file is missing, unreadable or stale
  (generation, identity or dtype differ) is rebuilt from the table, without re-embedding.
- ``index_meta`` holds the model identity and dimension. Vectors of another identity are
  refused with :class:`~indexer.errors.ModelMismatch`; changing the model is the explicit
  :meth:`IndexSet.switch_model` (drops the vectors and queues every instance again).
- A series vector is the mean of its instances' vectors, a study vector the mean of its
  series' vectors, renormalised; both are recomputed as instances arrive or go. A volume
  series holds only its sample's instance vectors (:mod:`indexer.sampling`), so its
  vector is the mean of the sample; :meth:`IndexSet.update` swaps one sample for another
  in one transaction.
- Each level's index stores ``dtype`` scalars (f16 by default) unless ``level_dtypes``
  says otherwise: instance and series vectors may be kept quantized (i8) on their own.

Modules, one concept each: :mod:`~indexer.index.vectors` (the ``vectors`` table),
``_meta`` (``index_meta``), ``_aggregation`` (parent means), ``_changes`` (writes inside
the caller's transaction), ``_log`` (how a change is made known: the generation, or the
PostgreSQL change log), ``_files`` (usearch in memory and on disk), ``_reads`` (the read
side of the set), ``_follow`` (applying the change log), ``_set`` (:class:`IndexSet`,
which ties them together).

On PostgreSQL several processes share the table: each change is logged in
``vector_changes`` (``_log``), and every process' :class:`IndexSet` follows the log
(:meth:`IndexSet.follow_changes`, from its horizon, also at start), instead of the
SQLite generation; :func:`prune_changes` (the maintenance leader, once a minute) drops
old log rows.

What the node uses besides :class:`IndexSet`: :func:`model_identity` and
:func:`vector_counts` (status), :func:`delete_instances` + :meth:`IndexSet.apply`
(deletion in the node's own transaction), :func:`prune_changes`.
"""

from __future__ import annotations

import time

from database import Connection, retrying
from indexer._levels import LevelValues
from indexer.index import _log, _meta, vectors
from indexer.index._changes import VectorChanges, delete_instances
from indexer.index._files import DTypeValues, HnswSettings
from indexer.index._set import IndexSet
from indexer.index.vectors import InstanceVector, StoredVector, VectorRow

__all__ = [
    "DTypeValues",
    "HnswSettings",
    "IndexSet",
    "InstanceVector",
    "StoredVector",
    "VectorChanges",
    "VectorRow",
    "delete_instances",
    "model_identity",
    "prune_changes",
    "vector_counts",
    "vectors",
]


def model_identity(conn: Connection) -> str | None:
    """The identity of the model the stored vectors belong to (None while none is bound)."""
    return _meta.model_identity(conn)


def vector_counts(conn: Connection) -> dict[LevelValues, int]:
    """How many vectors are stored at each level (every level, zero included)."""
    return vectors.counts_by_level(conn)


#: how long the change log keeps a row (docs/postgres.md §6): an index saved longer ago
#: than this is rebuilt from the table instead of replayed
CHANGES_KEPT_S = 3600.0


def prune_changes(conn: Connection, older_than_s: float = CHANGES_KEPT_S, *,
                  now: float | None = None) -> int:
    """Drop the change log rows older than ``older_than_s`` (one transaction of its own;
    PostgreSQL; 0 on SQLite, which keeps no log). Returns how many went."""
    if older_than_s < 0:
        raise ValueError(f"older_than_s must not be negative, got {older_than_s}")
    if not _log.follows(conn):
        return 0
    before = (time.time() if now is None else now) - older_than_s
    return retrying(conn, lambda c: _log.prune(c, before=before))
