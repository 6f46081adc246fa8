"""The one durable ingest path, shared by C-STORE, STOW-RS and `precedent index import`.

``Ingest.store`` checks the data set (UIDs, and :mod:`node.storage.integrity`: whole,
readable, pixel data as long as its Image Pixel module says), then keeps it in this
order (each step durable before the next):

1. **written**: the bytes, exactly as received, in
   ``tmp/<study>+<series>+<sop>+<token>.part`` (fsynced; :mod:`node.storage.files`);
2. **linked**: the part hard-linked to ``dicom/<study>/<series>/<sop>.dcm`` (or
   ``<sop>.v<token>.dcm`` when that name is taken), folder fsynced. The part stays as
   the journal entry of this store;
3. **committed**: the ``studies``, ``series`` and ``instances`` rows and the work-queue
   entry, in one transaction;
4. the journal entry is removed (and, for a replacement, the previous file).

Only when ``store`` returns has the instance been kept: a success answer may be sent
then, and not before. No file survives without its row, and no row without its file:

- a failure before the commit (the catalog refuses, the disk fills, a value cannot be
  catalogued) removes the file and the part, then raises;
- a crash leaves the journal entry: :func:`node.storage.recovery.settle_journal` (run
  when an ``Ingest`` is built and no other uses the folder) keeps the file when its row
  was committed (removing an older copy a replacement left) and removes it otherwise.

Step hooks (``after_step``) let tests fail or stop the ingest after each step. The module
is a little over the house's ~350 lines so that the whole order, and every way out of it,
reads in one place.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

import database
from database import Connection, DatabaseError, OperationalError, is_disk_full
from indexer import queue
from node.errors import DuplicateRejected, InvalidInstance, OutOfResources, SopClassMismatch
from node.settings import DuplicatePolicyValues
from node.storage._local import ThreadConnections
from node.storage.files import JournalEntry, link_into_place, remove_quietly, write_part
from node.storage.integrity import check_instance
from node.storage.recovery import IngestLease, settle_journal
from node.storage.uids import validate_uid

__all__ = ["Ingest", "IngestStepValues", "StoreOutcomeValues", "StoredInstance"]

log = logging.getLogger(__name__)


_UPSERT_STUDY = """INSERT INTO studies (study_instance_uid, patient_id, patient_name,
    patient_birth_date, patient_sex, study_date, study_time, accession_number,
    study_id, study_description, referring_physician_name, received_at,
    updated_at, stable_at)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)
ON CONFLICT(study_instance_uid) DO UPDATE SET
    updated_at = excluded.updated_at, stable_at = NULL,
    patient_id = coalesce(studies.patient_id, excluded.patient_id),
    patient_name = coalesce(studies.patient_name, excluded.patient_name),
    study_date = coalesce(studies.study_date, excluded.study_date),
    study_description = coalesce(studies.study_description, excluded.study_description),
    accession_number = coalesce(studies.accession_number, excluded.accession_number)"""
_INSERT_SERIES = """INSERT INTO series (series_instance_uid, study_instance_uid, modality,
    series_number, series_description, body_part_examined, series_date, series_time)
VALUES (?,?,?,?,?,?,?,?)
ON CONFLICT(series_instance_uid) DO NOTHING"""
_INSERT_INSTANCE = """INSERT INTO instances (sop_instance_uid, series_instance_uid,
    study_instance_uid, sop_class_uid, instance_number, transfer_syntax_uid,
    rows, columns, number_of_frames, path, size, received_at, source)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"""


class StoreOutcomeValues(str, Enum):
    STORED = "stored"
    DUPLICATE_KEPT = "duplicate_kept"  #: already stored; the first copy is kept
    REPLACED = "replaced"



def _catalog_away() -> OutOfResources:
    """The catalog's server cannot be reached (or its file is locked past the busy
    timeout): transient, so the sender is told to send again (0xA700)."""
    return OutOfResources("the node's catalog is not reachable now; send this instance "
                          "again shortly")

class IngestStepValues(str, Enum):
    """The steps of one store, in order (see the module docstring)."""

    WRITTEN = "written"
    LINKED = "linked"
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What the catalog now holds for one received instance."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    path: str
    outcome: StoreOutcomeValues


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def parse_part10(data: bytes) -> Dataset:
    """Read the header of a DICOM Part 10 stream (pixel data is not parsed).

    The error names the kind of failure only: pydicom's messages may quote values
    (patient data); they are logged at debug."""
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=False)
    except Exception as exc:  # pydicom raises assorted errors on corrupt streams
        log.debug("undecodable data set: %r", exc)
        raise InvalidInstance(
            f"the data set cannot be decoded ({type(exc).__name__}): not DICOM Part 10, "
            "or cut short" if isinstance(exc, InvalidDicomError | EOFError | OSError)
            else f"the data set cannot be decoded ({type(exc).__name__})"
        ) from exc


class Ingest:
    """Durable storage and cataloguing of received instances (thread-safe).

    ``after_step`` (for tests) is called after each :class:`IngestStepValues` step of a
    store; an exception it raises acts as a failure at that point (a ``BaseException``
    that is not an ``Exception`` as a crash: nothing is undone).
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        catalog: database.Target,
        duplicate_policy: DuplicatePolicyValues | str = DuplicatePolicyValues.KEEP_FIRST,
        reserve_bytes: int = 0,
        after_step: Callable[[IngestStepValues], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.catalog = catalog
        self.duplicate_policy = DuplicatePolicyValues(duplicate_policy)
        if reserve_bytes < 0:
            raise ValueError("reserve_bytes must be zero or more")
        self.reserve_bytes = reserve_bytes
        self._after_step = after_step
        self._listeners: list[Callable[[StoredInstance], None]] = []
        (self.data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self._connections = ThreadConnections(self.catalog)
        self._lease = IngestLease(self.data_dir)
        #: journal entries settled when this Ingest was built (see node.storage.recovery)
        self.recovered = self._lease.when_alone(
            lambda: settle_journal(self.data_dir, self._conn), otherwise=0)

    def close(self) -> None:
        """Let go of the data folder (another process may then settle its journal)."""
        self._lease.close()

    def add_listener(self, listener: Callable[[StoredInstance], None]) -> None:
        """Call ``listener`` after each instance is committed (keep it quick)."""
        self._listeners.append(listener)

    @property
    def _conn(self) -> Connection:
        return self._connections.get()

    def _step(self, step: IngestStepValues) -> None:
        if self._after_step is not None:
            self._after_step(step)

    # -- one store -----------------------------------------------------------------------

    def store(
        self,
        data: bytes,
        *,
        source: str,
        dataset: Dataset | None = None,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> StoredInstance:
        """Keep one Part 10 instance durably; raise :class:`IngestError` if it cannot be.

        ``sop_class_uid`` and ``sop_instance_uid`` are those the sender announced
        (the C-STORE request's Affected SOP Class/Instance UID) and must match the
        data set. ``dataset`` is the already decoded header, when the caller has it.
        """
        ds = dataset if dataset is not None else parse_part10(data)
        uids = _identify(ds, sop_class_uid, sop_instance_uid)
        sop_uid, class_uid, series_uid, study_uid = uids
        check_instance(data, ds)

        try:
            conn = self._conn
            existing = conn.execute(
                "SELECT study_instance_uid, series_instance_uid, path FROM instances "
                "WHERE sop_instance_uid = ?",
                (sop_uid,),
            ).fetchone()
        except OperationalError as exc:
            raise _catalog_away() from exc
        if existing is not None:
            if (existing[0], existing[1]) != (study_uid, series_uid):
                raise InvalidInstance(
                    f"SOP Instance UID {sop_uid} is stored already under another "
                    "study or series",
                    status=0xC213,
                )
            if self.duplicate_policy is DuplicatePolicyValues.KEEP_FIRST:
                return StoredInstance(
                    sop_uid, class_uid, series_uid, study_uid, existing[2],
                    StoreOutcomeValues.DUPLICATE_KEPT,
                )
            if self.duplicate_policy is DuplicatePolicyValues.REJECT:
                raise DuplicateRejected(f"SOP Instance UID {sop_uid} is stored already")

        entry = write_part(self.data_dir, (study_uid, series_uid, sop_uid), data,
                           reserve=self.reserve_bytes)
        relpath: PurePosixPath | None = None
        try:
            self._step(IngestStepValues.WRITTEN)
            relpath = link_into_place(self.data_dir, entry)
            self._step(IngestStepValues.LINKED)
            outcome, previous = self._record(conn, ds, relpath=str(relpath), size=len(data),
                                             source=source, uids=uids)
        except Exception as exc:
            self._undo(entry, relpath)
            if isinstance(exc, DatabaseError) and is_disk_full(exc):
                raise OutOfResources("the node's disk is full (catalog)") from exc
            if isinstance(exc, OperationalError):
                raise _catalog_away() from exc
            raise
        stored = StoredInstance(sop_uid, class_uid, series_uid, study_uid,
                                previous if outcome is StoreOutcomeValues.DUPLICATE_KEPT
                                and previous else str(relpath), outcome)
        try:
            self._step(IngestStepValues.COMMITTED)
            self._settle(entry, relpath, outcome, previous)
        except Exception:  # kept all the same; the next start settles the journal entry
            log.exception("instance=%s stored, but its journal entry was not settled", sop_uid)
        log.info("stored instance=%s study=%s outcome=%s source=%s",
                 sop_uid, study_uid, outcome.value, source)
        for listener in self._listeners:
            try:
                listener(stored)
            except Exception:  # a listener must never undo an acknowledged store
                log.exception("listener failed for instance=%s", sop_uid)
        return stored

    def _undo(self, entry: JournalEntry, relpath: PurePosixPath | None) -> None:
        """Nothing was committed: remove the file put in place and the part."""
        if relpath is not None:
            remove_quietly(self.data_dir / relpath)
        remove_quietly(entry.part)

    def _settle(self, entry: JournalEntry, relpath: PurePosixPath,
                outcome: StoreOutcomeValues, previous: str | None) -> None:
        """After the commit: drop what no row refers to, then the journal entry."""
        if outcome is StoreOutcomeValues.DUPLICATE_KEPT:
            remove_quietly(self.data_dir / relpath)  # a concurrent sender's copy won
        elif previous is not None and previous != str(relpath):
            remove_quietly(self.data_dir / previous)  # the replaced file
        remove_quietly(entry.part)

    def _record(
        self,
        conn: Connection,
        ds: Dataset,
        *,
        relpath: str,
        size: int,
        source: str,
        uids: tuple[str, str, str, str],
    ) -> tuple[StoreOutcomeValues, str | None]:
        """Catalogue one instance and queue it; return the outcome and the path the
        instance had before (``None`` when it is new)."""
        sop_uid, class_uid, series_uid, study_uid = uids
        now = time.time()
        transfer_syntax = None
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            transfer_syntax = _text(meta, "TransferSyntaxUID")
        study_row = (
            study_uid, _text(ds, "PatientID"), _text(ds, "PatientName"),
            _text(ds, "PatientBirthDate"), _text(ds, "PatientSex"),
            _text(ds, "StudyDate"), _text(ds, "StudyTime"),
            _text(ds, "AccessionNumber"), _text(ds, "StudyID"),
            _text(ds, "StudyDescription"), _text(ds, "ReferringPhysicianName"), now, now,
        )
        series_row = (
            series_uid, study_uid, _text(ds, "Modality"), _text(ds, "SeriesNumber"),
            _text(ds, "SeriesDescription"), _text(ds, "BodyPartExamined"),
            _text(ds, "SeriesDate"), _text(ds, "SeriesTime"),
        )
        instance_row = (
            sop_uid, series_uid, study_uid, class_uid, _text(ds, "InstanceNumber"),
            transfer_syntax, _int(ds, "Rows"), _int(ds, "Columns"),
            _int(ds, "NumberOfFrames"), relpath, size, now, source,
        )

        def write(conn: Connection) -> tuple[StoreOutcomeValues, str | None]:
            row = conn.execute(
                "SELECT path FROM instances WHERE sop_instance_uid = ?", (sop_uid,)
            ).fetchone()
            previous = None if row is None else str(row[0])
            if previous is not None and \
                    self.duplicate_policy is DuplicatePolicyValues.KEEP_FIRST:
                # a concurrent sender stored it first
                return StoreOutcomeValues.DUPLICATE_KEPT, previous
            conn.execute(_UPSERT_STUDY, study_row)
            conn.execute(_INSERT_SERIES, series_row)
            if previous is not None:  # a re-sent instance gets a new rowid: it lists last
                conn.execute("DELETE FROM instances WHERE sop_instance_uid = ?", (sop_uid,))
            conn.execute(_INSERT_INSTANCE, instance_row)
            queue.enqueue(conn, sop_uid, relpath, replace=previous is not None)
            if previous is None:
                return StoreOutcomeValues.STORED, None
            return StoreOutcomeValues.REPLACED, previous

        # several processes may ingest into one study at once (PostgreSQL): a collision
        # is run again, never answered as a failure
        return database.retrying(conn, write)


def _identify(ds: Dataset, sop_class_uid: str | None,
              sop_instance_uid: str | None) -> tuple[str, str, str, str]:
    """(SOP Instance, SOP Class, Series, Study UID), validated against what was announced."""
    try:
        sop_uid = validate_uid(ds.get("SOPInstanceUID"), "SOP Instance UID (0008,0018)")
        class_uid = validate_uid(ds.get("SOPClassUID"), "SOP Class UID (0008,0016)")
        study_uid = validate_uid(ds.get("StudyInstanceUID"), "Study Instance UID (0020,000D)")
        series_uid = validate_uid(ds.get("SeriesInstanceUID"),
                                  "Series Instance UID (0020,000E)")
    except InvalidInstance:
        raise
    except Exception as exc:  # a malformed element value raises on access
        log.debug("undecodable UID: %r", exc)
        raise InvalidInstance(
            f"the data set cannot be decoded: a UID is malformed ({type(exc).__name__})"
        ) from exc
    if sop_class_uid is not None and sop_class_uid != class_uid:
        raise SopClassMismatch(
            f"the data set's SOP Class UID {class_uid} differs from the one it was "
            f"sent as ({sop_class_uid})"
        )
    if sop_instance_uid is not None and sop_instance_uid != sop_uid:
        raise InvalidInstance(
            f"the data set's SOP Instance UID {sop_uid} differs from the one it was "
            f"sent as ({sop_instance_uid})",
            status=0xC211,
        )
    if series_uid == study_uid:
        raise InvalidInstance("Series Instance UID equals Study Instance UID", status=0xC212)
    return sop_uid, class_uid, series_uid, study_uid
