"""Similar cases back to the PACS as a Key Object Selection document (KOS).

:func:`write_similar_cases_kos` computes a study's similar cases (study level, the
study's stored vector), writes a KOS with highdicom that references the best-matching
instance of each case, stores it on the node through the one durable ingest path
(:meth:`Ingest.store`; the indexer skips it: it has no pixel data) and, when asked,
sends it by C-STORE to a configured destination.

The document: title (113000, DCM, "Of Interest") from CID 7010 (Key Object Selection
Document Titles; no code there names similar cases, "Of Interest" is the general
one), Key Object Description "Similar cases", series description "Similar cases",
patient and study of the *query* study, so that a PACS files it with the study being
read. Its references point into other studies (the similar cases). highdicom 0.28
builds KOS documents for one study only; DICOM allows several (PS3.3 C.17.6.2.1, the
Current Requested Procedure Evidence Sequence lists every referenced instance by
study and series), so the evidence sequence is written here, after highdicom built
the content tree.

Automatic mode (``[kos] auto_send``): :func:`install_auto_kos` adds a study-stable
listener that does the same in the background and sends to ``[kos] destination``.
A study whose latest instance is our own KOS is not answered again (storing the
KOS makes the study unstable once more).

Errors: :class:`node.errors.KosError` and its subclasses (UnknownDestination 404,
NothingToSelect 409, SendFailed 502: the KOS is stored, the destination refused it).
"""

from __future__ import annotations

import io
import logging
import sqlite3
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, TM

from indexer import LevelValues
from node.errors import (
    KosError,
    NothingToSelect,
    NotIndexed,
    QueryError,
    SendFailed,
    UnknownDestination,
    UnknownObject,
)
from node.similar import (
    Case,
    SimilarQuery,
    find_stored_object,
    similar_to_stored,
)
from node.storage.aes import get_destination

if TYPE_CHECKING:
    from highdicom.ko import KeyObjectSelectionDocument

    from node.runtime import Services
    from node.storage import StabilityMonitor

__all__ = [
    "KOS_DESCRIPTION",
    "KOS_SOURCE",
    "KOS_TITLE",
    "AutoKos",
    "KosResult",
    "build_similar_cases_kos",
    "install",
    "install_auto_kos",
    "write_similar_cases_kos",
]

log = logging.getLogger(__name__)

#: CID 7010 document title
KOS_TITLE = Code("113000", "DCM", "Of Interest")
KOS_DESCRIPTION = "Similar cases"
#: ``instances.source`` of the documents the node writes itself
KOS_SOURCE = "PRECEDENT-KOS"
KOS_SERIES_NUMBER = 9100
KEY_OBJECT_SELECTION_STORAGE = "1.2.840.10008.5.1.4.1.1.88.59"


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


# ------------------------------------------------------------------ building


def _study_header(conn: sqlite3.Connection, study_uid: str) -> Dataset:
    row = conn.execute("SELECT * FROM studies WHERE study_instance_uid = ?",
                       (study_uid,)).fetchone()
    if row is None:
        raise UnknownObject(f"study {study_uid} is not on this node")
    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    ds.PatientID = row["patient_id"] or ""
    ds.PatientName = row["patient_name"] or ""
    ds.PatientBirthDate = row["patient_birth_date"] or ""
    ds.PatientSex = row["patient_sex"] or ""
    ds.AccessionNumber = row["accession_number"] or ""
    ds.StudyID = row["study_id"] or ""
    ds.StudyDate = row["study_date"] or ""
    ds.StudyTime = row["study_time"] or ""
    ds.ReferringPhysicianName = row["referring_physician_name"] or ""
    texts = [str(v) for v in (ds.PatientName, ds.ReferringPhysicianName, ds.PatientID)]
    if any(not t.isascii() for t in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _referenced(conn: sqlite3.Connection, sop_uids: list[str]) -> dict[str, Dataset]:
    out: dict[str, Dataset] = {}
    for start in range(0, len(sop_uids), 500):
        chunk = sop_uids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            "SELECT sop_instance_uid, sop_class_uid, series_instance_uid, "
            f"study_instance_uid, rows, columns FROM instances "
            f"WHERE sop_instance_uid IN ({marks})", chunk
        ):
            ds = Dataset()
            ds.SOPInstanceUID = row["sop_instance_uid"]
            ds.SOPClassUID = row["sop_class_uid"]
            ds.SeriesInstanceUID = row["series_instance_uid"]
            ds.StudyInstanceUID = row["study_instance_uid"]
            if row["rows"] and row["columns"]:
                ds.Rows, ds.Columns = int(row["rows"]), int(row["columns"])
            out[row["sop_instance_uid"]] = ds
    return out


def _evidence_sequence(referenced: list[Dataset]) -> list[Dataset]:
    by_study: dict[str, dict[str, list[Dataset]]] = defaultdict(lambda: defaultdict(list))
    for ds in referenced:
        by_study[ds.StudyInstanceUID][ds.SeriesInstanceUID].append(ds)
    studies = []
    for study_uid, series_map in by_study.items():
        study_item = Dataset()
        study_item.StudyInstanceUID = study_uid
        series_items = []
        for series_uid, instances in series_map.items():
            series_item = Dataset()
            series_item.SeriesInstanceUID = series_uid
            sops = []
            for ds in instances:
                sop = Dataset()
                sop.ReferencedSOPClassUID = ds.SOPClassUID
                sop.ReferencedSOPInstanceUID = ds.SOPInstanceUID
                sops.append(sop)
            series_item.ReferencedSOPSequence = sops
            series_items.append(series_item)
        study_item.ReferencedSeriesSequence = series_items
        studies.append(study_item)
    return studies


def build_similar_cases_kos(
    conn: sqlite3.Connection,
    *,
    study_instance_uid: str,
    cases: list[Case],
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    manufacturer: str = "Precedent",
) -> KeyObjectSelectionDocument:
    """A KOS in the query study that references the best instance of each case."""
    from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument

    header = _study_header(conn, study_instance_uid)
    best = [c.best_instance_uid for c in cases if c.best_instance_uid]
    found = _referenced(conn, list(dict.fromkeys(best)))
    referenced = [found[uid] for uid in dict.fromkeys(best) if uid in found]
    if not referenced:
        raise NothingToSelect("no similar case has an instance to reference")
    content = KeyObjectSelection(document_title=KOS_TITLE, referenced_objects=referenced,
                                 description=KOS_DESCRIPTION)
    # highdicom takes the patient and study from the evidence and accepts one study:
    # give it the references dressed as the query study, then write the real evidence.
    evidence = []
    for ds in referenced:
        item = Dataset()
        item.update(header)
        item.SOPClassUID, item.SOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        item.SeriesInstanceUID = ds.SeriesInstanceUID
        evidence.append(item)
    kos = KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=KOS_SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer=manufacturer,
    )
    kos.CurrentRequestedProcedureEvidenceSequence = _evidence_sequence(referenced)
    kos._reference_lut = {  # keep resolve_reference() true to the evidence written
        ds.SOPInstanceUID: (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        for ds in referenced
    }
    kos.SeriesDescription = KOS_DESCRIPTION
    now = time.localtime()
    kos.ContentDate = DA(time.strftime("%Y%m%d", now))
    kos.ContentTime = TM(time.strftime("%H%M%S", now))
    return kos


def kos_bytes(kos: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, kos, enforce_file_format=True)
    return buffer.getvalue()


# ------------------------------------------------------------------ write and send


def write_similar_cases_kos(
    services: Services,
    study_instance_uid: str,
    query: SimilarQuery,
    *,
    destination: str | None = None,
) -> KosResult:
    """Compute the study's similar cases, store them as a KOS and, with ``destination``
    (an AE title configured as a destination), send it there by C-STORE."""
    from node.dimse.scu import DestinationUnreachable, send

    if query.level is not LevelValues.STUDY:
        raise KosError("a similar-cases KOS is written at the study level")
    conn = services.connections.get()
    target = None
    if destination is not None:
        target = get_destination(conn, destination)
        if target is None:
            raise UnknownDestination(
                f"destination {destination!r} is not configured: add it with "
                "'precedent ae destination add NAME HOST PORT' or POST /config/destination"
            )
    obj = find_stored_object(conn, study=study_instance_uid)
    _, index_set = services.model.require()
    answer = similar_to_stored(conn, index_set, obj, query)
    if not answer.cases:
        raise NothingToSelect(f"no similar case of study {study_instance_uid} passed the "
                              "filters: there is nothing to write")
    kos = build_similar_cases_kos(conn, study_instance_uid=study_instance_uid,
                                  cases=list(answer.cases),
                                  manufacturer=services.settings.node.ae_title)
    stored = services.ingest.store(kos_bytes(kos), source=KOS_SOURCE, dataset=kos)
    references = tuple(
        kos.resolve_reference(c.best_instance_uid) for c in answer.cases
        if c.best_instance_uid and c.best_instance_uid in kos._reference_lut
    )
    log.info("KOS stored study=%s sop=%s references=%d", study_instance_uid,
             stored.sop_instance_uid, len(references))
    sent_to = None
    if target is not None:
        stored_kos = pydicom.dcmread(services.settings.node.data_dir / stored.path)
        try:
            results = send(target, [stored_kos], calling_ae=services.settings.node.ae_title)
        except DestinationUnreachable as exc:
            raise SendFailed(f"the KOS was stored on this node but not sent: {exc}",
                             sop_instance_uid=stored.sop_instance_uid,
                             series_instance_uid=stored.series_instance_uid) from exc
        failed = [r for r in results if not r.ok]
        if failed:
            raise SendFailed(
                f"the KOS was stored on this node but {target.ae_title} refused it "
                f"(status 0x{failed[0].status:04X})",
                sop_instance_uid=stored.sop_instance_uid,
                series_instance_uid=stored.series_instance_uid)
        sent_to = target.ae_title
        log.info("KOS sent study=%s sop=%s destination=%s", study_instance_uid,
                 stored.sop_instance_uid, sent_to)
    return KosResult(stored.sop_instance_uid, stored.series_instance_uid, study_instance_uid,
                     sent_to, references)


# ------------------------------------------------------------------ automatic mode


def _answered_already(conn: sqlite3.Connection, study_uid: str) -> bool:
    """True when our latest KOS of the study is newer than every other instance."""
    row = conn.execute(
        """SELECT max(CASE WHEN source = ? THEN received_at END),
                  max(CASE WHEN source != ? OR source IS NULL THEN received_at END)
           FROM instances WHERE study_instance_uid = ?""",
        (KOS_SOURCE, KOS_SOURCE, study_uid),
    ).fetchone()
    ours, theirs = row[0], row[1]
    return theirs is None or (ours is not None and ours >= theirs)


def _waiting(conn: sqlite3.Connection, study_uid: str) -> int:
    row = conn.execute(
        """SELECT count(*) FROM instances i JOIN work w
           ON w.sop_instance_uid = i.sop_instance_uid
           WHERE i.study_instance_uid = ? AND w.state IN ('pending', 'in_progress')""",
        (study_uid,),
    ).fetchone()
    return int(row[0])


class AutoKos:
    """The study-stable listener of the automatic mode: work happens on its own thread."""

    def __init__(self, services: Services, *, destination: str, limit: int,
                 wait_indexed_s: float = 600.0, poll_s: float = 0.5) -> None:
        self.services = services
        self.destination = destination
        self.limit = limit
        self.wait_indexed_s = wait_indexed_s
        self.poll_s = poll_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auto-kos")
        self._stop = threading.Event()
        self.results: list[KosResult] = []

    def on_stable(self, study_instance_uid: str) -> None:
        """The listener: only enqueues."""
        if not self._stop.is_set():
            self._executor.submit(self._run, study_instance_uid)

    def submit(self, study_instance_uid: str) -> Future[KosResult | None]:
        return self._executor.submit(self._run, study_instance_uid)

    def _run(self, study_uid: str) -> KosResult | None:
        try:
            return self._answer(study_uid)
        except (KosError, QueryError) as exc:
            log.warning("automatic KOS not sent study=%s reason=%s", study_uid, exc)
        except Exception:  # the worker thread must survive any one study
            log.exception("automatic KOS failed study=%s", study_uid)
        return None

    def _answer(self, study_uid: str) -> KosResult | None:
        conn = self.services.connections.get()
        if _answered_already(conn, study_uid):
            log.debug("automatic KOS skipped study=%s (answered already)", study_uid)
            return None
        deadline = time.monotonic() + self.wait_indexed_s
        if not self.services.model.ready.wait(self.wait_indexed_s):
            raise KosError("the model is not loaded")
        while _waiting(conn, study_uid) and time.monotonic() < deadline:
            if self._stop.wait(self.poll_s):
                return None
        query = SimilarQuery(level=LevelValues.STUDY, limit=self.limit)
        try:
            result = write_similar_cases_kos(self.services, study_uid, query,
                                             destination=self.destination)
        except NotIndexed as exc:
            log.info("automatic KOS not written study=%s reason=%s", study_uid, exc)
            return None
        self.results.append(result)
        return result

    def close(self) -> None:
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


def install_auto_kos(services: Services, monitor: StabilityMonitor) -> AutoKos | None:
    """When ``[kos] auto_send`` is on, answer each stable study with a KOS sent to
    ``[kos] destination``. Returns the listener (``close()`` it at shutdown), or ``None``
    when the mode is off."""
    kos = services.settings.kos
    if not kos.auto_send:
        return None
    if not kos.destination:
        log.error("kos.auto_send is on but kos.destination is not set: no KOS will be sent")
        return None
    auto = AutoKos(services, destination=kos.destination, limit=kos.limit)
    monitor.add_listener(auto.on_stable)
    log.info("automatic KOS on destination=%s limit=%d", kos.destination, kos.limit)
    return auto


def install(node: Any) -> None:
    """Start-up hook (``node.app``): the automatic KOS, when enabled."""
    node.auto_kos = install_auto_kos(node.services, node.stability)
