"""A study's similar cases written as a KOS: computed (study level, the study's stored
vector), built (:mod:`.document`), stored on the node through the one durable ingest
path (:meth:`Ingest.store`; the indexer skips it: it has no pixel data) and, when
asked, sent to a configured destination (:mod:`.send`).

Errors: :class:`node.errors.KosError` and its subclasses (UnknownDestination 404,
NothingToSelect 409, SendFailed 502: the KOS is stored, the destination refused it),
and the :class:`node.errors.QueryError` of the similar-case query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from indexer import LevelValues
from node.errors import KosError, NothingToSelect
from node.key_objects.document import KOS_SOURCE, build_similar_cases_kos, kos_bytes
from node.key_objects.send import destination_named, send_kos
from node.retrieval import Case, SimilarQuery, find_stored_object, similar_to_stored

if TYPE_CHECKING:
    from highdicom.ko import KeyObjectSelectionDocument

    from node.runtime import Services

__all__ = ["KosResult", "write_similar_cases_kos"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KosResult:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sent_to: str | None
    #: (study, series, sop) of each referenced instance, in rank order
    references: tuple[tuple[str, str, str], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "SOPInstanceUID": self.sop_instance_uid,
            "SeriesInstanceUID": self.series_instance_uid,
            "StudyInstanceUID": self.study_instance_uid,
            "sent_to": self.sent_to,
            "references": len(self.references),
        }


def _references(kos: KeyObjectSelectionDocument, cases: Iterable[Case]
                ) -> tuple[tuple[str, str, str], ...]:
    """(study, series, sop) of each case's best instance the KOS references."""
    out = []
    for case in cases:
        if not case.best_instance_uid:
            continue
        try:
            out.append(kos.resolve_reference(case.best_instance_uid))
        except ValueError:  # highdicom: not in the evidence (deleted meanwhile)
            continue
    return tuple(out)


def write_similar_cases_kos(
    services: Services,
    study_instance_uid: str,
    query: SimilarQuery,
    *,
    destination: str | None = None,
    uids: tuple[str, str] | None = None,
) -> KosResult:
    """Compute the study's similar cases, store them as a KOS and, with ``destination``
    (an AE title configured as a destination), send it there by C-STORE. ``uids`` are
    its Series and SOP Instance UIDs (default: new ones)."""
    if query.level is not LevelValues.STUDY:
        raise KosError("a similar-cases KOS is written at the study level")
    conn = services.connections.get()
    target = destination_named(conn, destination) if destination is not None else None
    obj = find_stored_object(conn, study=study_instance_uid)
    _, index_set = services.model.require()
    answer = similar_to_stored(conn, index_set, obj, query)
    if not answer.cases:
        raise NothingToSelect(f"no similar case of study {study_instance_uid} passed the "
                              "filters: there is nothing to write")
    kos = build_similar_cases_kos(conn, study_instance_uid=study_instance_uid,
                                  cases=list(answer.cases),
                                  manufacturer=services.settings.node.ae_title,
                                  series_instance_uid=uids[0] if uids else None,
                                  sop_instance_uid=uids[1] if uids else None)
    stored = services.ingest.store(kos_bytes(kos), source=KOS_SOURCE, dataset=kos)
    references = _references(kos, answer.cases)
    log.info("KOS stored study=%s sop=%s references=%d", study_instance_uid,
             stored.sop_instance_uid, len(references))
    sent_to = None
    if target is not None:
        sent_to = send_kos(services.settings.node.data_dir / stored.path, target,
                           calling_ae=services.settings.node.ae_title,
                           sop_instance_uid=stored.sop_instance_uid,
                           series_instance_uid=stored.series_instance_uid)
    return KosResult(stored.sop_instance_uid, stored.series_instance_uid, study_instance_uid,
                     sent_to, references)
