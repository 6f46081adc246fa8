"""Changes to the ``vectors`` table inside the caller's transaction — storing instance
vectors, deleting them — each with its series' and studies' means recomputed and the
change made known (:mod:`~indexer.index._log`: the generation bumped on SQLite, the keys
logged on PostgreSQL). Each returns the :class:`VectorChanges` to apply to the in-memory
indexes once the transaction has committed (:meth:`IndexSet.apply`).

A crash between the commit and the in-memory update loses nothing: on SQLite the saved
index files then name an older generation than the catalog's, and are rebuilt from
``vectors`` at the next start; on PostgreSQL they are brought up to date from the log.
On PostgreSQL these run in a serializable transaction (:func:`database.retrying`): two
workers finishing instances of one series cannot both write a mean that misses the
other's instance; one of them runs again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from database import Connection
from indexer import queue
from indexer._levels import LevelValues
from indexer.errors import ModelMismatch
from indexer.index import _log, _meta, vectors
from indexer.index._aggregation import ParentChange, refresh_parents

__all__ = ["VectorChanges", "delete_instances", "replace_instances", "store_instances"]


@dataclasses.dataclass
class VectorChanges:
    """What a transaction changed in ``vectors``: keys to (re)add with their vectors, keys
    to remove, and the catalog generation after it."""

    upserted: list[tuple[LevelValues, int, npt.NDArray[np.float32]]] = dataclasses.field(
        default_factory=list
    )
    removed: list[tuple[LevelValues, int]] = dataclasses.field(default_factory=list)
    generation: int = 0

    @property
    def empty(self) -> bool:
        return not self.upserted and not self.removed

    def add_parents(self, parents: Iterable[ParentChange]) -> None:
        for level, key, vec in parents:
            if vec is None:
                self.removed.append((level, key))
            else:
                self.upserted.append((level, key, vec))

    def then(self, later: VectorChanges) -> VectorChanges:
        """These changes followed by ``later`` ones, as one: the last word on each key."""
        final: dict[tuple[LevelValues, int], npt.NDArray[np.float32] | None] = {}
        for changes in (self, later):
            for level, key in changes.removed:
                final[(level, key)] = None
            for level, key, vec in changes.upserted:
                final[(level, key)] = vec
        out = VectorChanges(generation=max(self.generation, later.generation))
        for (level, key), last in final.items():
            if last is None:
                out.removed.append((level, key))
            else:
                out.upserted.append((level, key, last))
        return out


def store_instances(
    conn: Connection,
    items: Sequence[vectors.InstanceVector],
    *,
    model_id: str,
    dim: int,
    only_claimed: bool = False,
    claimer: str | None = None,
) -> tuple[list[int], VectorChanges]:
    """Upsert instance vectors (unit length) and refresh their parents; returns the stored
    instances' keys and the changes. Inside the caller's transaction.

    With ``only_claimed``, only instances still claimed on the work queue by ``claimer``
    are stored: one deleted while it was being embedded is not brought back, and one
    whose claim was handed back to another worker is that worker's to store.
    """
    if only_claimed:
        mine = queue.claimed(conn, [it.sop_instance_uid for it in items], claimer=claimer)
        items = [it for it in items if it.sop_instance_uid in mine]
    if not items:
        return [], VectorChanges(generation=_meta.generation(conn))
    changes = VectorChanges()
    keys: list[int] = []
    for it in items:
        vec = vectors.unit(np.asarray(it.vector, dtype=np.float32).reshape(-1))
        if vec.shape[0] != dim:
            raise ModelMismatch(f"vector of dim {vec.shape[0]} for an index of dim {dim}")
        key = vectors.upsert(
            conn,
            level=LevelValues.INSTANCE,
            uid=it.sop_instance_uid,
            parent_uid=it.series_instance_uid,
            study_instance_uid=it.study_instance_uid,
            patient_id=it.patient_id,
            modality=it.modality,
            body_part=it.body_part,
            study_date=it.study_date,
            model_id=model_id,
            vector=vec,
        )
        keys.append(key)
        changes.upserted.append((LevelValues.INSTANCE, key, vec))
    series = {(it.series_instance_uid, it.study_instance_uid) for it in items}
    changes.add_parents(refresh_parents(conn, sorted(series), model_id))
    changes.generation = _log.record(conn, _keys(changes.upserted), changes.removed)
    return keys, changes


def delete_instances(conn: Connection, sop_instance_uids: Iterable[str]) -> VectorChanges:
    """Delete these instances' vectors and update (or delete) their series and studies.

    Runs inside the caller's transaction and never commits, so the node deletes an
    object's catalog rows, queue entries and vectors all at once. Instances without a
    vector are ignored; when none had one, nothing changes (not even the generation).
    """
    found = vectors.instance_parents(conn, sop_instance_uids)
    changes = VectorChanges(generation=_meta.generation(conn))
    if not found:
        return changes
    for uid in found:
        key = vectors.delete_row(conn, LevelValues.INSTANCE, uid)
        if key is not None:
            changes.removed.append((LevelValues.INSTANCE, key))
    by_model: dict[str, set[tuple[str, str]]] = {}
    for series_uid, study_uid, model_id in found.values():
        by_model.setdefault(model_id, set()).add((series_uid, study_uid))
    for model_id, series in by_model.items():
        changes.add_parents(refresh_parents(conn, sorted(series), model_id))
    changes.generation = _log.record(conn, _keys(changes.upserted), changes.removed)
    return changes


def _keys(upserted: Iterable[tuple[LevelValues, int, object]]) -> list[tuple[LevelValues, int]]:
    return [(level, key) for level, key, _ in upserted]


def replace_instances(
    conn: Connection,
    add: Sequence[vectors.InstanceVector],
    remove: Sequence[str],
    *,
    model_id: str,
    dim: int,
    claimer: str | None = None,
) -> tuple[list[str], VectorChanges]:
    """Store ``add`` (only instances still claimed by ``claimer`` on the work queue) and
    delete the vectors of ``remove``, with their series and studies recomputed: a series'
    new sample replacing its old one. Inside the caller's transaction. Returns the UIDs
    stored."""
    stored = [it.sop_instance_uid for it in add]
    if add:
        mine = queue.claimed(conn, stored, claimer=claimer)
        stored = [u for u in stored if u in mine]
    _, added = store_instances(conn, add, model_id=model_id, dim=dim, only_claimed=True,
                               claimer=claimer)
    removed = delete_instances(conn, remove)
    return stored, added.then(removed)
