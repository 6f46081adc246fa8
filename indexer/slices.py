"""The slices of volume series and their sampling decisions: the indexer's ``slices``,
``volume_series`` and ``study_completion`` tables (the only module that writes SQL on
them).

- ``slices``: one row per single-frame slice of a CT, MR, PET or NM series, with what the
  sampler needs from its header (read without pixel data by the worker: Instance Number,
  ImagePositionPatient, ImageOrientationPatient) and when it arrived.
- ``study_completion``: when the node last declared each study stable (its slices that
  arrived before are complete, even those the worker has not looked at yet).
- ``volume_series``: one row per such series. It is ``open`` while its sample is to be
  decided (a slice arrived, or one was deleted, since the last decision) and ``sampled``
  once decided; ``sample`` lists the SOP Instance UIDs embedded at the last decision and
  ``version`` counts changes of its members, so a decision taken while another slice
  arrived leaves the series open.

A series is complete, and its sample due (:func:`due_series`), when the earlier of two
signals has passed: no slice of it arrived for ``series_quiet_s``, or its study was
declared stable by the node (:func:`study_complete`, called in the node's study-stable
transaction); and no instance that arrived before that moment is still waiting to be
looked at (it may be one more slice). Writes run inside the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterable, Sequence

from database import Connection
from indexer.image_plane import SliceHeader

__all__ = [
    "SCHEMA",
    "AdmissionValues",
    "DueSeries",
    "SeriesStateValues",
    "admit",
    "due_series",
    "forget",
    "members",
    "record_sample",
    "sample_of",
    "study_complete",
]


class SeriesStateValues(str, enum.Enum):
    """Where a volume series' sampling stands."""

    OPEN = "open"  #: its members changed since the last decision (or there was none)
    SAMPLED = "sampled"  #: its sample is decided and recorded


class AdmissionValues(str, enum.Enum):
    """What becomes of a slice the worker has just looked at."""

    HOLD = "hold"  #: its series is open: wait for the decision
    EMBED = "embed"  #: its series is sampled and it is in the sample
    NOT_SAMPLED = "not_sampled"  #: its series is sampled and it is not in the sample


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS slices (
    sop_instance_uid TEXT PRIMARY KEY,
    series_instance_uid TEXT NOT NULL,
    study_instance_uid TEXT NOT NULL,
    modality TEXT,
    instance_number INTEGER,
    position TEXT,
    orientation TEXT,
    arrived_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS slices_series ON slices (series_instance_uid);

CREATE TABLE IF NOT EXISTS volume_series (
    series_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    modality TEXT,
    state TEXT NOT NULL CHECK (state IN ({", ".join(f"'{s.value}'" for s in SeriesStateValues)})),
    version INTEGER NOT NULL DEFAULT 0,
    last_arrival REAL NOT NULL,
    complete_at REAL,
    sample TEXT,
    k INTEGER,
    sampled_at REAL
);
CREATE INDEX IF NOT EXISTS volume_series_state ON volume_series (state, study_instance_uid);

CREATE TABLE IF NOT EXISTS study_completion (
    study_instance_uid TEXT PRIMARY KEY,
    complete_at REAL NOT NULL
);
"""

_OPEN = SeriesStateValues.OPEN.value
_SAMPLED = SeriesStateValues.SAMPLED.value


def _joined(values: Sequence[float] | None) -> str | None:
    return None if values is None else "\\".join(repr(float(v)) for v in values)


def _split(text: str | None, n: int) -> tuple[float, ...] | None:
    if not text:
        return None
    values = tuple(float(v) for v in str(text).split("\\"))
    return values if len(values) == n else None


@dataclasses.dataclass(frozen=True)
class DueSeries:
    """An open series whose sample is due, at the ``version`` it was read at."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str | None
    version: int


def admit(
    conn: Connection, arrivals: Sequence[tuple[SliceHeader, float]],
    k_for: Callable[[str | None], int],
) -> dict[str, AdmissionValues]:
    """Record slices (their header and arrival time) and say what becomes of each.

    A slice new to its series, or whose place changed, opens the series (a decision is
    due again), as does one whose series was sampled with another number of slices than
    ``k_for(modality)`` says now; one already known unchanged (sent again, or queued again
    after a rebuild) follows the recorded sample. Inside the caller's transaction.
    """
    out: dict[str, AdmissionValues] = {}
    for header, arrived_at in arrivals:
        uid = header.sop_instance_uid
        row = (
            header.series_instance_uid, header.study_instance_uid, header.modality,
            header.instance_number, _joined(header.position), _joined(header.orientation),
        )
        old = conn.execute(
            "SELECT series_instance_uid, study_instance_uid, modality, instance_number,"
            " position, orientation FROM slices WHERE sop_instance_uid = ?", (uid,),
        ).fetchone()
        changed = old is None or tuple(old) != row
        recorded = conn.execute(
            "SELECT k FROM volume_series WHERE series_instance_uid = ? AND state = ?",
            (header.series_instance_uid, _SAMPLED),
        ).fetchone()
        if recorded is not None and recorded[0] != k_for(header.modality):
            changed = True  # the settings changed since: decide again
        if changed:
            conn.execute(
                "INSERT INTO slices (sop_instance_uid, series_instance_uid,"
                " study_instance_uid, modality, instance_number, position, orientation,"
                " arrived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (sop_instance_uid) DO UPDATE SET"
                " series_instance_uid = excluded.series_instance_uid,"
                " study_instance_uid = excluded.study_instance_uid,"
                " modality = excluded.modality, instance_number = excluded.instance_number,"
                " position = excluded.position, orientation = excluded.orientation,"
                " arrived_at = excluded.arrived_at",
                (uid, *row, arrived_at),
            )
            if old is not None and old[0] != header.series_instance_uid:
                _reopen(conn, [str(old[0])])
            _open(conn, header, arrived_at)
        state, sample = sample_of(conn, header.series_instance_uid)
        if changed or state is not SeriesStateValues.SAMPLED:
            out[uid] = AdmissionValues.HOLD
        elif uid in sample:
            out[uid] = AdmissionValues.EMBED
        else:
            out[uid] = AdmissionValues.NOT_SAMPLED
    return out


def _open(conn: Connection, header: SliceHeader, arrived_at: float) -> None:
    """Open the slice's series (a decision is due again). It is complete already when its
    study was declared stable after this slice arrived: the worker may look at slices
    only after the study-stable event."""
    stable = conn.execute(
        "SELECT complete_at FROM study_completion WHERE study_instance_uid = ?",
        (header.study_instance_uid,),
    ).fetchone()
    complete_at = float(stable[0]) if stable is not None and arrived_at <= stable[0] else None
    conn.execute(
        "INSERT INTO volume_series (series_instance_uid, study_instance_uid, modality,"
        " state, version, last_arrival, complete_at) VALUES (?, ?, ?, ?, 1, ?, ?)"
        " ON CONFLICT (series_instance_uid) DO UPDATE SET state = excluded.state,"
        " version = volume_series.version + 1, complete_at = excluded.complete_at,"
        " modality = coalesce(volume_series.modality, excluded.modality),"
        " last_arrival = CASE WHEN excluded.last_arrival > volume_series.last_arrival"
        " THEN excluded.last_arrival ELSE volume_series.last_arrival END",
        (header.series_instance_uid, header.study_instance_uid, header.modality, _OPEN,
         arrived_at, complete_at),
    )


def _reopen(conn: Connection, series_uids: Iterable[str]) -> None:
    """Series that lost a slice: sampled again at once (complete since time 0: every
    slice they keep is known), or gone when they have none left."""
    for series_uid in series_uids:
        left = conn.execute(
            "SELECT 1 FROM slices WHERE series_instance_uid = ? LIMIT 1", (series_uid,)
        ).fetchone()
        if left is None:
            conn.execute(
                "DELETE FROM volume_series WHERE series_instance_uid = ?", (series_uid,)
            )
        else:
            conn.execute(
                "UPDATE volume_series SET state = ?, version = version + 1, complete_at = 0"
                " WHERE series_instance_uid = ?",
                (_OPEN, series_uid),
            )


def forget(conn: Connection, sop_instance_uids: Sequence[str]) -> None:
    """Instances deleted from the node: their slice rows go, and each volume series that
    keeps other slices is sampled again (inside the caller's transaction)."""
    series: set[str] = set()
    studies: set[str] = set()
    for uid in sop_instance_uids:
        row = conn.execute(
            "DELETE FROM slices WHERE sop_instance_uid = ?"
            " RETURNING series_instance_uid, study_instance_uid", (uid,),
        ).fetchone()
        if row is not None:
            series.add(str(row[0]))
            studies.add(str(row[1]))
    _reopen(conn, sorted(series))
    for study in sorted(studies):
        if conn.execute("SELECT 1 FROM slices WHERE study_instance_uid = ? LIMIT 1",
                        (study,)).fetchone() is None:
            conn.execute("DELETE FROM study_completion WHERE study_instance_uid = ?", (study,))


def study_complete(conn: Connection, study_instance_uids: Sequence[str], now: float) -> None:
    """The node declared these studies stable: their open volume series are complete, and
    so are those of their slices the worker has not looked at yet (inside the caller's
    transaction, the node's study-stable one)."""
    conn.executemany(
        "INSERT INTO study_completion (study_instance_uid, complete_at) VALUES (?, ?)"
        " ON CONFLICT (study_instance_uid) DO UPDATE SET complete_at = excluded.complete_at",
        [(uid, now) for uid in study_instance_uids],
    )
    conn.executemany(
        "UPDATE volume_series SET complete_at = ? WHERE state = ? AND study_instance_uid = ?",
        [(now, _OPEN, uid) for uid in study_instance_uids],
    )


def due_series(
    conn: Connection, *, now: float, quiet_s: float, oldest_unsorted: float | None,
    limit: int = 100,
) -> list[DueSeries]:
    """Open series whose sample is due now (see the module docstring), oldest first."""
    due: list[tuple[float, DueSeries]] = []
    for uid, study, modality, version, last_arrival, complete_at in conn.execute(
        "SELECT series_instance_uid, study_instance_uid, modality, version, last_arrival,"
        " complete_at FROM volume_series WHERE state = ?", (_OPEN,),
    ):
        horizon = float(last_arrival) + quiet_s
        if complete_at is not None:
            horizon = min(horizon, float(complete_at))
        if horizon <= now and (oldest_unsorted is None or horizon < oldest_unsorted):
            due.append((horizon, DueSeries(str(uid), str(study), modality, int(version))))
    due.sort(key=lambda d: (d[0], d[1].series_instance_uid))
    return [d for _, d in due[:limit]]


def members(conn: Connection, series_instance_uid: str) -> list[SliceHeader]:
    """The slices of a series, as recorded."""
    out: list[SliceHeader] = []
    for r in conn.execute(
        "SELECT sop_instance_uid, study_instance_uid, modality, instance_number, position,"
        " orientation FROM slices WHERE series_instance_uid = ?", (series_instance_uid,),
    ):
        position, orientation = _split(r[4], 3), _split(r[5], 6)
        out.append(SliceHeader(
            sop_instance_uid=str(r[0]),
            series_instance_uid=series_instance_uid,
            study_instance_uid=str(r[1]),
            modality=r[2],
            instance_number=None if r[3] is None else int(r[3]),
            position=None if position is None else (position[0], position[1], position[2]),
            orientation=None if orientation is None else (
                orientation[0], orientation[1], orientation[2],
                orientation[3], orientation[4], orientation[5],
            ),
        ))
    return out


def sample_of(
    conn: Connection, series_instance_uid: str
) -> tuple[SeriesStateValues | None, set[str]]:
    """A series' state and its last recorded sample (None and empty if it is unknown)."""
    row = conn.execute(
        "SELECT state, sample FROM volume_series WHERE series_instance_uid = ?",
        (series_instance_uid,),
    ).fetchone()
    if row is None:
        return None, set()
    return SeriesStateValues(row[0]), set(json.loads(row[1]) if row[1] else [])


def record_sample(
    conn: Connection, series_instance_uid: str, *, version: int, sample: Sequence[str],
    k: int, now: float,
) -> bool:
    """Record a decision: the sample, of ``k`` slices asked for (inside the caller's
    transaction). False when the series changed since it was read at ``version``: it
    then stays open for another decision."""
    cur = conn.execute(
        "UPDATE volume_series SET state = ?, sample = ?, k = ?, sampled_at = ?"
        " WHERE series_instance_uid = ? AND version = ?",
        (_SAMPLED, json.dumps(list(sample)), k, now, series_instance_uid, version),
    )
    return cur.rowcount > 0
