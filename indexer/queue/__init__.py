"""The work queue: one row per received instance, in the catalog's ``work`` table.

States (``WorkStateValues``)::

    pending ──claim──▶ in_progress ──▶ done | skipped | failed | not_sampled
       ▲                    │
       ├── retry_later ─────┤   (transient error: back to pending with not_before)
       ├── hold ────────────┘   (a slice of a volume: waits for its series, see below)
       ├── reset_in_progress ◀─ at start, after a crash or a kill (embedded)
       └── return_claims ◀───── the claims of processes no longer alive (shared)

A slice of a volume series is *held*: pending, never claimed (``not_before`` is
:data:`HELD`), until its series is complete and sampled (:mod:`indexer.slices`); the
decision then takes (:func:`take`) the chosen slices (in progress, to be embedded) and marks the
others ``not_sampled`` (stored and catalogued, never decoded). ``enqueued_at`` is the
instance's arrival, which the series' quiet period is measured from.

``enqueue`` and ``delete`` run inside the caller's transaction and never commit (the node
calls ``enqueue`` in its ingest transaction and ``delete`` in its deletion transaction), as
do ``take`` and ``mark`` (a series' sampling decision, with its other rows).
Every other mutating function opens its own transaction (:func:`database.transaction`)
and commits it; calling one while the connection is already in a transaction raises
:class:`~indexer.errors.QueueError`.

Modules: ``_states`` (the states, :data:`HELD`, :class:`WorkItem`), ``_changes`` (every
write on ``work``), ``_counts`` (the reads). This package is the only code that writes SQL
on ``work``.

The node reads the queue through :func:`counts` (the whole queue, or the instances of one
study, series or instance, whose UIDs it reads from its own tables) and :func:`states_of`;
it never runs SQL on ``work``. The table is created by :func:`indexer.ensure_schema`.

Several workers may share one queue (PostgreSQL): :func:`claim` skips the rows another
claimer is taking, records the claimer (``claimed_by``), and every outcome (and every
vector the worker stores, :func:`claimed`) is written only while the claim is still the
caller's, so an instance whose claim was handed back (:func:`return_claims`, by the
maintenance leader, for processes no longer alive) is completed once, by its new
claimer. ``reset_in_progress`` is for the embedded set-up (one process per catalog).

``attempts`` counts claims: a claim increments it, so an instance that kills the worker
every time it is touched is marked failed by ``reset_in_progress`` once it has used up
``max_attempts``, instead of crashing the worker forever.
"""

from __future__ import annotations

from indexer.queue._changes import (
    claim,
    defer,
    delete,
    enqueue,
    hold,
    mark,
    mark_done,
    mark_failed,
    mark_skipped,
    release,
    requeue_all,
    reset_in_progress,
    retry_later,
    return_claims,
    take,
)
from indexer.queue._counts import (
    QueueCounts,
    claimed,
    counts,
    held,
    oldest_unsorted_arrival,
    states_of,
)
from indexer.queue._states import HELD, WorkItem, WorkStateValues

__all__ = [
    "HELD",
    "QueueCounts",
    "WorkItem",
    "WorkStateValues",
    "claim",
    "claimed",
    "counts",
    "defer",
    "delete",
    "enqueue",
    "held",
    "hold",
    "mark",
    "mark_done",
    "mark_failed",
    "mark_skipped",
    "oldest_unsorted_arrival",
    "release",
    "requeue_all",
    "reset_in_progress",
    "retry_later",
    "return_claims",
    "states_of",
    "take",
]
