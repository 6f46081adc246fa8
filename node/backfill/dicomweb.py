"""The PACS over DICOMweb, through dicomweb-client: QIDO-RS for the studies of a date
window, their series and instances; WADO-RS for the instances, asked for in the transfer
syntax the PACS holds (``transfer-syntax=*``, no transcoding), each stored through the
node's one ingest path (as STOW-RS is) with the backfill's source.

dicomweb-client hands back parsed data sets; each is written back to Part 10 bytes as
parsed (pydicom keeps the elements' values as received) before it is stored.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from node.backfill.pacs import (
    DateWindow,
    PacsError,
    PacsUnavailable,
    RemoteSeries,
    RemoteStudy,
    Retrieved,
    RetrieveLevelValues,
)
from node.errors import IngestError

__all__ = ["DicomwebPacs", "DicomwebSession", "InstanceStore"]

_T = TypeVar("_T")
#: stores one instance (its Part 10 bytes and parsed header); raises IngestError
InstanceStore = Callable[[bytes, Dataset], None]

#: ask for instances as the PACS holds them (PS3.18 8.7.3.5.2: ``transfer-syntax=*``)
_AS_STORED = (("application/dicom", "*"),)
_TRANSIENT_HTTP = {408, 429, 502, 503, 504}


def _value(item: dict[str, Any], tag: str) -> list[Any]:
    element = item.get(tag) or {}
    return list(element.get("Value") or [])


def _first(item: dict[str, Any], tag: str) -> Any:
    values = _value(item, tag)
    return values[0] if values else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


class DicomwebSession:
    """One HTTP session with the PACS's DICOMweb service."""

    def __init__(self, client: DICOMwebClient, session: requests.Session, *,
                 store: InstanceStore, url: str) -> None:
        self._client = client
        self._session = session
        self._store = store
        self._url = url
        self._aborted = threading.Event()

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in _TRANSIENT_HTTP:
                raise PacsUnavailable(f"{self._url} answered {what} with HTTP {status}") \
                    from exc
            raise PacsError(f"{self._url} answered {what} with HTTP {status}") from exc
        except requests.RequestException as exc:
            raise PacsUnavailable(f"{self._url} cannot be reached ({type(exc).__name__})") \
                from exc

    def find_studies(self, window: DateWindow, modalities: Sequence[str]) -> list[RemoteStudy]:
        filters: dict[str, Any] = {"StudyDate": window.study_date}
        if window.study_time:
            filters["StudyTime"] = window.study_time
        answers = self._call("QIDO-RS /studies", lambda: self._client.search_for_studies(
            fields=["StudyDate", "NumberOfStudyRelatedInstances", "ModalitiesInStudy"],
            search_filters=filters, get_remaining=True))
        return [RemoteStudy(str(_first(item, "0020000D")), _first(item, "00080020"),
                            _int(_first(item, "00201208")),
                            tuple(str(m).upper() for m in _value(item, "00080061")))
                for item in answers if _first(item, "0020000D")]

    def find_series(self, study_instance_uid: str) -> list[RemoteSeries] | None:
        answers = self._call("QIDO-RS /series", lambda: self._client.search_for_series(
            study_instance_uid=study_instance_uid,
            fields=["Modality", "NumberOfSeriesRelatedInstances"]))
        series = [RemoteSeries(str(_first(a, "0020000E")),
                               str(_first(a, "00080060") or "").upper() or None,
                               _int(_first(a, "00201209")))
                  for a in answers if _first(a, "0020000E")]
        return series or None

    def find_instances(self, study_instance_uid: str, series_instance_uid: str) -> list[str]:
        answers = self._call("QIDO-RS /instances", lambda: self._client.search_for_instances(
            study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid,
            fields=["SOPInstanceUID"], get_remaining=True))
        return [str(_first(a, "00080018")) for a in answers if _first(a, "00080018")]

    def _store_all(self, datasets: Iterator[Dataset]) -> Retrieved:
        completed = failed = 0
        reason = None
        for ds in datasets:
            if self._aborted.is_set():
                raise PacsUnavailable("the backfill stopped during a WADO-RS retrieve")
            try:
                self._store(_part10(ds), ds)
                completed += 1
            except IngestError as exc:
                failed += 1
                reason = f"the node did not store an instance: {exc}"
        return Retrieved(completed, failed, reason)

    def retrieve(self, level: RetrieveLevelValues, study_instance_uid: str,
                 series_instance_uid: str | None = None,
                 sop_instance_uids: Sequence[str] = ()) -> Retrieved:
        level = RetrieveLevelValues(level)
        client = self._client
        if level is RetrieveLevelValues.STUDY:
            return self._call("WADO-RS (study)", lambda: self._store_all(
                client.iter_study(study_instance_uid, media_types=_AS_STORED)))
        assert series_instance_uid is not None
        if level is RetrieveLevelValues.SERIES:
            return self._call("WADO-RS (series)", lambda: self._store_all(
                client.iter_series(study_instance_uid, series_instance_uid,
                                   media_types=_AS_STORED)))
        return self._call("WADO-RS (instance)", lambda: self._store_all(
            client.retrieve_instance(study_instance_uid, series_instance_uid, sop,
                                     media_types=_AS_STORED)
            for sop in sop_instance_uids))

    def abort(self) -> None:
        self._aborted.set()
        self._session.close()

    def close(self) -> None:
        self._session.close()


class DicomwebPacs:
    """Opens HTTP sessions with the DICOMweb service at ``url``; instances go to
    ``store``."""

    def __init__(self, url: str, *, store: InstanceStore, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.store = store
        self.timeout = timeout

    def open(self) -> DicomwebSession:
        session = requests.Session()
        client = DICOMwebClient(self.url, session=session, timeout=self.timeout)
        return DicomwebSession(client, session, store=self.store, url=self.url)
