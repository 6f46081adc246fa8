"""The one durable ingest path, shared by C-STORE, STOW-RS and `precedent index import`.

``Ingest.store`` checks the data set, writes its bytes exactly as received
(temporary file, fsync, rename, fsync folder), then records the instance in the
catalog and on the work queue in one transaction. Only when it returns has the
instance been kept: a success answer may be sent then, and not before.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from database import Connection, DatabaseError, is_disk_full, transaction
from indexer import queue
from node.errors import DuplicateRejected, InvalidInstance, OutOfResources, SopClassMismatch
from node.settings import DuplicatePolicyValues
from node.storage._local import ThreadConnections
from node.storage.files import instance_relpath, write_durably
from node.storage.uids import validate_uid

__all__ = ["Ingest", "StoreOutcomeValues", "StoredInstance"]

log = logging.getLogger(__name__)


class StoreOutcomeValues(str, Enum):
    STORED = "stored"
    DUPLICATE_KEPT = "duplicate_kept"  #: already stored; the first copy is kept
    REPLACED = "replaced"


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
    """Read the header of a DICOM Part 10 stream (pixel data is not parsed)."""
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=False)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidInstance(f"the data set cannot be decoded: {exc}") from exc
    except Exception as exc:  # pydicom raises assorted errors on corrupt streams
        raise InvalidInstance(f"the data set cannot be decoded: {type(exc).__name__}") from exc


class Ingest:
    """Durable storage and cataloguing of received instances (thread-safe)."""

    def __init__(
        self,
        *,
        data_dir: Path,
        db_path: Path,
        duplicate_policy: DuplicatePolicyValues | str = DuplicatePolicyValues.KEEP_FIRST,
        reserve_bytes: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.db_path = Path(db_path)
        self.duplicate_policy = DuplicatePolicyValues(duplicate_policy)
        if reserve_bytes < 0:
            raise ValueError("reserve_bytes must be zero or more")
        self.reserve_bytes = reserve_bytes
        self._listeners: list[Callable[[StoredInstance], None]] = []
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._connections = ThreadConnections(self.db_path)

    def add_listener(self, listener: Callable[[StoredInstance], None]) -> None:
        """Call ``listener`` after each instance is committed (keep it quick)."""
        self._listeners.append(listener)

    @property
    def _conn(self) -> Connection:
        return self._connections.get()

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
        try:
            sop_uid = validate_uid(ds.get("SOPInstanceUID"), "SOP Instance UID (0008,0018)")
            class_uid = validate_uid(ds.get("SOPClassUID"), "SOP Class UID (0008,0016)")
            study_uid = validate_uid(ds.get("StudyInstanceUID"), "Study Instance UID (0020,000D)")
            series_uid = validate_uid(
                ds.get("SeriesInstanceUID"), "Series Instance UID (0020,000E)"
            )
        except InvalidInstance:
            raise
        except Exception as exc:  # a malformed element value raises on access
            raise InvalidInstance(f"the data set cannot be decoded: {exc}") from exc
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

        conn = self._conn
        existing = conn.execute(
            "SELECT study_instance_uid, series_instance_uid, path FROM instances "
            "WHERE sop_instance_uid = ?",
            (sop_uid,),
        ).fetchone()
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

        relpath = instance_relpath(study_uid, series_uid, sop_uid)
        size = write_durably(self.data_dir, relpath, data, reserve=self.reserve_bytes)
        try:
            outcome = self._record(conn, ds, relpath=str(relpath), size=size, source=source,
                                   uids=(sop_uid, class_uid, series_uid, study_uid))
        except DatabaseError as exc:
            if is_disk_full(exc):  # the catalog cannot grow
                raise OutOfResources("the node's disk is full (catalog)") from exc
            raise
        stored = StoredInstance(sop_uid, class_uid, series_uid, study_uid, str(relpath), outcome)
        log.info("stored instance=%s study=%s outcome=%s source=%s",
                 sop_uid, study_uid, outcome.value, source)
        for listener in self._listeners:
            try:
                listener(stored)
            except Exception:  # a listener must never undo an acknowledged store
                log.exception("listener failed for instance=%s", sop_uid)
        return stored

    def _record(
        self,
        conn: Connection,
        ds: Dataset,
        *,
        relpath: str,
        size: int,
        source: str,
        uids: tuple[str, str, str, str],
    ) -> StoreOutcomeValues:
        sop_uid, class_uid, series_uid, study_uid = uids
        now = time.time()
        transfer_syntax = None
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            transfer_syntax = _text(meta, "TransferSyntaxUID")
        with transaction(conn):
            replaced = conn.execute(
                "SELECT 1 FROM instances WHERE sop_instance_uid = ?", (sop_uid,)
            ).fetchone() is not None
            if replaced and self.duplicate_policy is DuplicatePolicyValues.KEEP_FIRST:
                return StoreOutcomeValues.DUPLICATE_KEPT  # a concurrent sender stored it first
            conn.execute(
                """INSERT INTO studies (study_instance_uid, patient_id, patient_name,
                    patient_birth_date, patient_sex, study_date, study_time, accession_number,
                    study_id, study_description, referring_physician_name, received_at,
                    updated_at, stable_at)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)
                ON CONFLICT(study_instance_uid) DO UPDATE SET
                    updated_at = excluded.updated_at, stable_at = NULL,
                    patient_id = coalesce(studies.patient_id, excluded.patient_id),
                    patient_name = coalesce(studies.patient_name, excluded.patient_name),
                    study_date = coalesce(studies.study_date, excluded.study_date),
                    study_description = coalesce(studies.study_description,
                                                 excluded.study_description),
                    accession_number = coalesce(studies.accession_number,
                                                excluded.accession_number)""",
                (
                    study_uid, _text(ds, "PatientID"), _text(ds, "PatientName"),
                    _text(ds, "PatientBirthDate"), _text(ds, "PatientSex"),
                    _text(ds, "StudyDate"), _text(ds, "StudyTime"),
                    _text(ds, "AccessionNumber"), _text(ds, "StudyID"),
                    _text(ds, "StudyDescription"), _text(ds, "ReferringPhysicianName"),
                    now, now,
                ),
            )
            conn.execute(
                """INSERT INTO series (series_instance_uid, study_instance_uid, modality,
                    series_number, series_description, body_part_examined, series_date,
                    series_time)
                VALUES (?,?,?,?,?,?,?,?)
                ON CONFLICT(series_instance_uid) DO NOTHING""",
                (
                    series_uid, study_uid, _text(ds, "Modality"), _text(ds, "SeriesNumber"),
                    _text(ds, "SeriesDescription"), _text(ds, "BodyPartExamined"),
                    _text(ds, "SeriesDate"), _text(ds, "SeriesTime"),
                ),
            )
            conn.execute(
                """INSERT OR REPLACE INTO instances (sop_instance_uid, series_instance_uid,
                    study_instance_uid, sop_class_uid, instance_number, transfer_syntax_uid,
                    rows, columns, number_of_frames, path, size, received_at, source)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    sop_uid, series_uid, study_uid, class_uid, _text(ds, "InstanceNumber"),
                    transfer_syntax, _int(ds, "Rows"), _int(ds, "Columns"),
                    _int(ds, "NumberOfFrames"), relpath, size, now, source,
                ),
            )
            queue.enqueue(conn, sop_uid, relpath, replace=replaced)
        return StoreOutcomeValues.REPLACED if replaced else StoreOutcomeValues.STORED
