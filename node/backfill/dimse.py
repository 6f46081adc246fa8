"""The PACS over DIMSE: Study Root C-FIND at STUDY, SERIES and IMAGE level, then C-MOVE
to the node's own AE title (the PACS sends the instances to the node's C-STORE SCP), or
C-GET (they come back over the same association and go through the ingest here).

For C-MOVE the PACS must know the node: its AE title, host and DIMSE port (Orthanc:
``DicomModalities``; dcm4chee: an AE entry). The node must accept the PACS's C-STOREs
(``precedent ae source add PACS --permissions store``, or ``allow_any_source``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from pydicom.dataset import Dataset

from node.backfill.pacs import (
    CappedAnswer,
    DateWindow,
    PacsError,
    PacsUnavailable,
    RemoteSeries,
    RemoteStudy,
    Retrieved,
    RetrieveLevelValues,
)
from node.dimse.scu import (
    DestinationUnreachable,
    QueryRetrieve,
    RetrieveResult,
    RetrieveValues,
    StoreHandler,
    open_query_retrieve,
)
from node.storage.aes import Destination

__all__ = ["DimsePacs", "DimseSession"]

#: C-FIND final statuses that end an answer early with some matches: the PACS's cap
#: (Orthanc's LimitFindResults ends with Cancel 0xFE00; others with 0xA700, 0xB000…)
_SUCCESS = 0x0000


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _strings(value: object) -> tuple[str, ...]:
    """A CS value (one string, or pydicom's MultiValue) as upper-case strings."""
    if value is None or value == "":
        return ()
    items = [value] if isinstance(value, str) else list(cast(Iterable[object], value))
    return tuple(str(v).strip().upper() for v in items if str(v).strip())


def _study(answer: Dataset) -> RemoteStudy | None:
    uid = str(answer.get("StudyInstanceUID", "") or "").strip()
    if not uid:
        return None
    return RemoteStudy(uid, str(answer.get("StudyDate", "") or "") or None,
                       _int(answer.get("NumberOfStudyRelatedInstances")),
                       _strings(answer.get("ModalitiesInStudy")))


class DimseSession:
    """One Study Root association with the PACS."""

    def __init__(self, qr: QueryRetrieve, *, move_destination: str,
                 retrieve: RetrieveValues) -> None:
        self._qr = qr
        self._move_destination = move_destination
        self._retrieve = retrieve

    def _find(self, identifier: Dataset) -> tuple[list[Dataset], int]:
        try:
            result = self._qr.find(identifier)
        except DestinationUnreachable as exc:
            raise PacsUnavailable(str(exc)) from exc
        return result.matches, result.status

    def find_studies(self, window: DateWindow, modalities: Sequence[str]) -> list[RemoteStudy]:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.StudyDate = window.study_date
        query.StudyTime = window.study_time
        query.NumberOfStudyRelatedInstances = ""
        query.ModalitiesInStudy = "\\".join(modalities)
        matches, status = self._find(query)
        studies = [s for s in map(_study, matches) if s is not None]
        if status != _SUCCESS:
            if studies:
                raise CappedAnswer(studies, f"C-FIND ended with 0x{status:04X}")
            raise PacsError(f"the PACS answered the C-FIND of {window} with 0x{status:04X}")
        return studies

    def find_series(self, study_instance_uid: str) -> list[RemoteSeries] | None:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_instance_uid
        query.SeriesInstanceUID = ""
        query.Modality = ""
        query.NumberOfSeriesRelatedInstances = ""
        matches, status = self._find(query)
        series = [RemoteSeries(str(m.SeriesInstanceUID),
                               str(m.get("Modality", "") or "").upper() or None,
                               _int(m.get("NumberOfSeriesRelatedInstances")))
                  for m in matches if str(m.get("SeriesInstanceUID", "") or "")]
        return series if status == _SUCCESS and series else None

    def find_instances(self, study_instance_uid: str, series_instance_uid: str) -> list[str]:
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = study_instance_uid
        query.SeriesInstanceUID = series_instance_uid
        query.SOPInstanceUID = ""
        matches, status = self._find(query)
        if status != _SUCCESS:
            raise PacsError(f"the PACS answered the IMAGE-level C-FIND with 0x{status:04X}")
        return [str(m.SOPInstanceUID) for m in matches if m.get("SOPInstanceUID")]

    def retrieve(self, level: RetrieveLevelValues, study_instance_uid: str,
                 series_instance_uid: str | None = None,
                 sop_instance_uids: Sequence[str] = ()) -> Retrieved:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = RetrieveLevelValues(level).value
        identifier.StudyInstanceUID = study_instance_uid
        if series_instance_uid is not None:
            identifier.SeriesInstanceUID = series_instance_uid
        if sop_instance_uids:
            identifier.SOPInstanceUID = list(sop_instance_uids)
        try:
            if self._retrieve is RetrieveValues.MOVE:
                result = self._qr.move(identifier, move_destination=self._move_destination)
            else:
                result = self._qr.get(identifier)
        except DestinationUnreachable as exc:
            raise PacsUnavailable(str(exc)) from exc
        return Retrieved(result.completed, result.failed, self._reason(result))

    def _reason(self, result: RetrieveResult) -> str | None:
        if result.ok:
            return None
        what = "C-MOVE" if self._retrieve is RetrieveValues.MOVE else "C-GET"
        code = f"0x{result.status:04X}"
        if result.status == 0xA801:
            return (f"the PACS does not know the move destination {self._move_destination} "
                    f"({code}): declare this node to the PACS (Orthanc: DicomModalities)")
        if result.failed:
            return (f"{result.failed} of {result.failed + result.completed} instances did "
                    f"not reach the node ({what} {code})")
        if result.status & 0xFF00 == 0xA700:
            return f"the PACS is out of resources ({what} {code})"
        if result.status == 0xFE00:
            return f"the PACS cancelled the {what} ({code})"
        if self._retrieve is RetrieveValues.MOVE:
            return (f"the PACS answered the C-MOVE with {code} (if nothing arrives, check "
                    f"that it knows this node as {self._move_destination} at its host and "
                    "port, Orthanc: DicomModalities, and that the node accepts its C-STOREs: "
                    "precedent ae source add … --permissions store)")
        return f"the PACS answered the {what} with {code}"

    def abort(self) -> None:
        self._qr.abort()

    def close(self) -> None:
        self._qr.release()


class DimsePacs:
    """Opens Study Root associations with ``destination`` as ``calling_ae``; C-MOVE
    brings the instances to ``move_destination`` (the node's AE title), C-GET hands them
    to ``on_store``."""

    def __init__(self, destination: Destination, *, calling_ae: str, move_destination: str,
                 retrieve: RetrieveValues, on_store: StoreHandler | None = None,
                 timeout: float = 60.0) -> None:
        if retrieve is RetrieveValues.GET and on_store is None:
            raise ValueError("on_store is required for C-GET")
        self.destination = destination
        self.calling_ae = calling_ae
        self.move_destination = move_destination
        self.retrieve = retrieve
        self.on_store = on_store
        self.timeout = timeout

    def open(self) -> DimseSession:
        try:
            qr = open_query_retrieve(self.destination, calling_ae=self.calling_ae,
                                     retrieve=self.retrieve, on_store=self.on_store,
                                     timeout=self.timeout)
        except DestinationUnreachable as exc:
            raise PacsUnavailable(str(exc)) from exc
        except OSError as exc:  # name resolution, refused connection before ACSE
            raise PacsUnavailable(f"{self.destination.ae_title} cannot be reached: "
                                  f"{exc.strerror or exc}") from exc
        return DimseSession(qr, move_destination=self.move_destination,
                            retrieve=self.retrieve)
