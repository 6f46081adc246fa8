"""One study, pulled: compare what the PACS holds with what the node holds, and bring
only what is missing.

1. The study's Number of Study Related Instances against the catalogued count: the node
   holds them all already → done, nothing asked of the PACS. The node holds none of it
   and every modality in the study is wanted → one STUDY-level retrieve (no SERIES-level
   query: the common case of a first backfill).
2. Otherwise its series (SERIES level): only image series of the wanted modalities
   count. Series the node holds in full are left alone; a series it lacks entirely is
   retrieved whole; a series it holds in part is listed (IMAGE level) and only the
   missing instances are retrieved. When every series is wanted and none is held, the
   study is retrieved in one request. On a retry (an earlier attempt fell short) every
   incomplete series is listed and retrieved at IMAGE level, and a request that falls
   short again is repeated one instance at a time, so one instance the node refuses
   does not hold back the others.
3. A PACS that does not answer at SERIES level gets one STUDY-level retrieve (every
   series then comes).

Then the node's holdings are counted again: every wanted instance there → ``done``;
otherwise ``partial`` with the reason, retried later the same way (so a partial C-MOVE
retries only what is missing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from database import Connection
from node.backfill.pacs import (
    NON_IMAGE_MODALITIES,
    PacsSession,
    RemoteSeries,
    Retrieved,
    RetrieveLevelValues,
)
from node.backfill.states import PlanStateValues
from node.storage.holdings import (
    series_instance_counts,
    series_sop_instance_uids,
    study_instance_count,
)

__all__ = ["PullOutcome", "pull_study", "wants_series"]

#: SOP Instance UIDs per IMAGE-level retrieve
_IMAGE_CHUNK = 100

#: called after each retrieve with the series it asked for (``None``: the whole study)
Retrieving = Callable[[Sequence[str] | None], None]


@dataclass(frozen=True, slots=True)
class PullOutcome:
    """Where a study stands after one attempt."""

    state: PlanStateValues
    #: instances of the wanted series on the PACS (``None``: it did not say)
    wanted: int | None
    #: of those, held by the node now
    received: int
    reason: str | None = None


def _shortfall(held: int, wanted: int | None, why: str | None) -> str:
    text = f"{held} of {wanted if wanted is not None else '?'} instances on the node"
    return f"{text}; {why}" if why else text


def wants_series(modality: str | None, modalities: Sequence[str]) -> bool:
    """An image series of a wanted modality (any image modality when none is named)."""
    if modalities:
        return modality is not None and modality.upper() in modalities
    return modality is None or modality.upper() not in NON_IMAGE_MODALITIES


def _retrieve_images(session: PacsSession, conn: Connection, study_uid: str,
                     series_uid: str, sops: list[str]) -> Retrieved:
    """Some instances of a series at IMAGE level, in chunks; a chunk that falls short is
    asked again one instance at a time (a PACS may stop a C-MOVE at its first failed
    sub-operation: the others still come, and the one that fails is named)."""
    completed = failed = 0
    reason = None
    for start in range(0, len(sops), _IMAGE_CHUNK):
        chunk = sops[start:start + _IMAGE_CHUNK]
        got = session.retrieve(RetrieveLevelValues.IMAGE, study_uid, series_uid, chunk)
        completed += got.completed
        if got.ok:
            continue
        have = series_sop_instance_uids(conn, series_uid)
        for sop in (s for s in chunk if s not in have):
            one = session.retrieve(RetrieveLevelValues.IMAGE, study_uid, series_uid, [sop])
            completed, failed = completed + one.completed, failed + (0 if one.ok else 1)
            reason = one.reason or reason
    return Retrieved(completed, failed, reason)


def _retrieve_missing(session: PacsSession, conn: Connection, study_uid: str,
                      series: RemoteSeries, held: int, *, retry: bool) -> Retrieved:
    if held == 0 and not retry:
        return session.retrieve(RetrieveLevelValues.SERIES, study_uid,
                                series.series_instance_uid)
    have = series_sop_instance_uids(conn, series.series_instance_uid)
    missing = [sop for sop in session.find_instances(study_uid, series.series_instance_uid)
               if sop not in have]
    return _retrieve_images(session, conn, study_uid, series.series_instance_uid, missing)


def pull_study(session: PacsSession, conn: Connection, *, study_instance_uid: str,
               remote_instances: int | None, modalities: Sequence[str],
               retrieving: Retrieving, remote_modalities: Sequence[str] = (),
               retry: bool = False) -> PullOutcome:
    """One attempt at ``study_instance_uid`` (see the module docstring). Raises what the
    session raises (:class:`~node.backfill.pacs.PacsUnavailable`,
    :class:`~node.backfill.pacs.PacsError`). ``retry``: an earlier attempt fell short, so
    every incomplete series is listed and asked for at IMAGE level."""
    uid = study_instance_uid
    held_total = study_instance_count(conn, uid)
    if remote_instances is not None and held_total >= remote_instances > 0:
        return PullOutcome(PlanStateValues.DONE, remote_instances, held_total)
    if (not retry and held_total == 0 and remote_instances and remote_modalities
            and all(wants_series(m, modalities) for m in remote_modalities)):
        got = session.retrieve(RetrieveLevelValues.STUDY, uid)
        retrieving(None)
        held_total = study_instance_count(conn, uid)
        if held_total >= remote_instances:
            return PullOutcome(PlanStateValues.DONE, remote_instances, held_total)
        return PullOutcome(PlanStateValues.PARTIAL, remote_instances, held_total,
                           _shortfall(held_total, remote_instances, got.reason))
    series = session.find_series(uid)
    if series is None:  # no SERIES-level answer: the whole study
        got = session.retrieve(RetrieveLevelValues.STUDY, uid)
        retrieving(None)
        held_total = study_instance_count(conn, uid)
        if remote_instances is not None and held_total >= remote_instances:
            return PullOutcome(PlanStateValues.DONE, remote_instances, held_total)
        return PullOutcome(PlanStateValues.PARTIAL, remote_instances, held_total,
                           _shortfall(held_total, remote_instances, got.reason))
    wanted = [s for s in series if wants_series(s.modality, modalities)]
    if not wanted:
        return PullOutcome(PlanStateValues.DONE, 0, 0)
    held = series_instance_counts(conn, uid)
    missing = [s for s in wanted
               if s.instances is None or held.get(s.series_instance_uid, 0) < s.instances]
    reasons: list[str] = []
    if missing and len(wanted) == len(series) and not held and not retry:
        got = session.retrieve(RetrieveLevelValues.STUDY, uid)
        retrieving([s.series_instance_uid for s in wanted])
        if got.reason:
            reasons.append(got.reason)
    else:
        for s in missing:
            got = _retrieve_missing(session, conn, uid, s, held.get(s.series_instance_uid, 0),
                                    retry=retry)
            retrieving([s.series_instance_uid])
            if got.reason:
                reasons.append(got.reason)
    held = series_instance_counts(conn, uid)
    received = sum(min(held.get(s.series_instance_uid, 0), s.instances)
                   if s.instances is not None else held.get(s.series_instance_uid, 0)
                   for s in wanted)
    known = [s.instances for s in wanted]
    total = sum(n for n in known if n is not None) if None not in known else None
    incomplete = [s for s in wanted
                  if held.get(s.series_instance_uid, 0) < (s.instances or 1)]
    if not incomplete:
        return PullOutcome(PlanStateValues.DONE, total, received)
    return PullOutcome(PlanStateValues.PARTIAL, total, received,
                       _shortfall(received, total, reasons[0] if reasons else None))
