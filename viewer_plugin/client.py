"""The Qt-free HTTP client of the node.

Standard DICOMweb calls (QIDO-RS searches, WADO-RS metadata, instances, rendered)
go through ``dicomweb_client.DICOMwebClient``; the similar-case extension, reports,
thumbnails and the KOS route go through the *same* ``requests.Session``, which
carries the bearer token. Every failure leaves this module as a
:mod:`viewer_plugin.errors` exception with a plain-words message.

The client is cheap to build; the panel builds one per background task, so no
session is ever shared across threads.

    client = PrecedentClient(NodeSettings(url="http://127.0.0.1:8042", token="…"))
    result = client.similar_to_study(study_uid, query=SimilarQuery(limit=10))
    for case in result.cases: ...
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite

from viewer_plugin.cases import (
    KosResult,
    Report,
    SimilarResult,
    parse_consensus,
    parse_similar_cases,
)
from viewer_plugin.errors import (
    BadQuery,
    ModelNotLoaded,
    NodeFailed,
    NodeRefused,
    NodeTimeout,
    NodeUnreachable,
    NotFound,
    PrecedentError,
    QueryCancelled,
    TokenRefused,
)

__all__ = [
    "CancelToken",
    "LevelValues",
    "NodeSettings",
    "PrecedentClient",
    "SimilarQuery",
    "dicomweb_base_url",
    "pick_representative",
]

T = TypeVar("T")


class LevelValues(str, Enum):
    """The levels a similar-case query answers at (the panel shows INSTANCE as "Image")."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


def dicomweb_base_url(url: str) -> str:
    """The DICOMweb base for what a user typed.

    ``http://host:8042`` → ``http://host:8042/dicom-web``; a URL that already has a
    path (``…/dicom-web``, or a proxy prefix) is kept as given.
    """
    url = url.strip()
    if not url:
        raise ValueError("url: the node URL is empty")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url: scheme {parts.scheme!r} is not http or https")
    if not parts.netloc:
        raise ValueError(f"url: {url!r} has no host")
    path = parts.path.rstrip("/")
    if not path:
        path = "/dicom-web"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSettings:
    """Where the node is and how to talk to it."""

    url: str
    token: str = ""
    timeout: float = 20.0

    def __post_init__(self) -> None:
        dicomweb_base_url(self.url)  # validates, naming the argument
        if self.timeout <= 0:
            raise ValueError(f"timeout: must be positive, got {self.timeout}")

    def __repr__(self) -> str:  # never print the token
        masked = "set" if self.token else "none"
        return f"NodeSettings(url={self.url!r}, token=<{masked}>, timeout={self.timeout})"


@dataclass(frozen=True, slots=True, kw_only=True)
class SimilarQuery:
    """The parameters every similar-case query shares."""

    level: LevelValues | str = LevelValues.STUDY
    limit: int = 10
    modality: str = ""
    body_part: str = ""
    study_date: str = ""  # "YYYYMMDD" or "YYYYMMDD-YYYYMMDD" (either side may be empty)
    exclude_patient: bool = True
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", LevelValues(self.level))
        if not 1 <= self.limit <= 100:
            raise ValueError(f"limit: must be between 1 and 100, got {self.limit}")
        object.__setattr__(self, "positive", tuple(self.positive))
        object.__setattr__(self, "negative", tuple(self.negative))

    def params(self) -> list[tuple[str, str]]:
        """The query string, as (name, value) pairs (``positive``/``negative`` repeat)."""
        p: list[tuple[str, str]] = [("limit", str(self.limit))]
        if self.modality:
            p.append(("Modality", self.modality))
        if self.body_part:
            p.append(("BodyPartExamined", self.body_part))
        if self.study_date.strip("-"):
            p.append(("StudyDate", self.study_date))
        p.append(("excludePatient", "true" if self.exclude_patient else "false"))
        p += [("positive", uid) for uid in self.positive]
        p += [("negative", uid) for uid in self.negative]
        return p


class CancelToken:
    """A flag a background task checks between network calls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise QueryCancelled()


def _problem(response: requests.Response) -> tuple[str, str]:
    """(title, detail) of an RFC 7807 body, or of a FastAPI ``{"detail": …}`` body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return "", text[:300] if text and "<html" not in text.lower() else ""
    if not isinstance(body, Mapping):
        return "", ""
    title = str(body.get("title") or "")
    detail = body.get("detail") or ""
    if not isinstance(detail, str):  # FastAPI validation errors: a list of dicts
        detail = json.dumps(detail)[:300]
    return title, detail


def _error_from_response(response: requests.Response) -> NodeRefused:
    status = response.status_code
    title, detail = _problem(response)
    what = detail or title
    if status == 401:
        return TokenRefused(
            "The node refused the access token (401)." if "authorization" in {
                k.lower() for k in (response.request.headers if response.request else {})
            } else "The node needs an access token (401).",
            status=status, title=title, detail=detail,
        )
    if status == 403:
        return TokenRefused(
            "The access token is not allowed to do this (403).",
            status=status, title=title, detail=detail,
            hint="Use a token with the right scope (ask your IT admin).",
        )
    if status == 404:
        return NotFound(
            f"Not found on the node: {what}" if what else "Not found on the node (404).",
            status=status, title=title, detail=detail,
        )
    if status in (400, 406, 413, 415, 422):
        return BadQuery(
            f"The node rejected the query ({status}): {what}" if what
            else f"The node rejected the query ({status}).",
            status=status, title=title, detail=detail,
        )
    if status == 503:
        return ModelNotLoaded(
            f"The node cannot search right now: {what}" if what
            else "The node cannot search right now (503): its model is not loaded.",
            status=status, title=title, detail=detail,
        )
    return NodeFailed(
        f"The node answered with an error ({status}): {what}" if what
        else f"The node answered with an error ({status}).",
        status=status, title=title, detail=detail,
    )


class PrecedentClient:
    """Talks to one node; every method raises only :class:`~viewer_plugin.errors.PrecedentError`.

    ``session`` may be given to inject a transport (tests mount a
    ``requests`` adapter on it); its headers get the bearer token.
    """

    def __init__(
        self,
        settings: NodeSettings,
        *,
        session: requests.Session | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = dicomweb_base_url(settings.url)
        self.cancel_token = cancel or CancelToken()
        self._session = session or requests.Session()
        self._session.headers["Accept-Encoding"] = "gzip, deflate"
        if settings.token:
            self._session.headers["Authorization"] = f"Bearer {settings.token}"
        self._dicomweb = DICOMwebClient(
            url=self.base_url, session=self._session, timeout=settings.timeout
        )
        # the viewer shows errors at once; no silent exponential back-off on 503
        self._dicomweb.set_http_retry_params(retry=False)

    # ---------------------------------------------------------------- plumbing

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _guard(self, call: Callable[[], T]) -> T:
        """Run one network call, mapping every foreign failure to ours."""
        self.cancel_token.raise_if_cancelled()
        try:
            result = call()
        except PrecedentError:
            raise
        except requests.HTTPError as exc:
            if exc.response is None:
                raise NodeFailed(f"The node answered with an error: {exc}", status=0) from exc
            raise _error_from_response(exc.response) from exc
        except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            raise NodeTimeout(self.base_url, self.settings.timeout) from exc
        except requests.ConnectionError as exc:
            raise NodeUnreachable(self.base_url) from exc
        except requests.RequestException as exc:
            raise NodeFailed(f"The request to the node failed: {exc}", status=0) from exc
        except (ValueError, KeyError, TypeError) as exc:  # unreadable JSON / DICOM
            raise NodeFailed(f"The node's answer could not be read: {exc}", status=0) from exc
        self.cancel_token.raise_if_cancelled()
        return result

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | Mapping[str, Any] | None = None,
        data: bytes | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        response = self._session.request(
            method, url, params=params, data=data, json=json_body,
            headers=dict(headers or {}), timeout=self.settings.timeout,
        )
        response.raise_for_status()
        return response

    @staticmethod
    def _uid(uid: str, name: str) -> str:
        uid = (uid or "").strip()
        if not uid or len(uid) > 64 or not all(c.isdigit() or c == "." for c in uid):
            raise BadQuery(f"{name} {uid!r} is not a DICOM UID.", status=0,
                           hint="Pick a study the node knows.")
        return quote(uid, safe=".")

    def _similar(self, method: str, path: str, query: SimilarQuery,
                 extra: Iterable[tuple[str, str]] = (), *, data: bytes | None = None,
                 content_type: str | None = None) -> SimilarResult:
        params = list(query.params()) + list(extra)
        headers = {"Accept": "application/dicom+json, application/json"}
        if content_type:
            headers["Content-Type"] = content_type

        def call() -> SimilarResult:
            response = self._request(method, path, params=params, data=data, headers=headers)
            items = response.json() if response.content else []
            return SimilarResult(
                cases=parse_similar_cases(items),
                consensus=parse_consensus(response.headers.get("Precedent-Consensus")),
                level=LevelValues(query.level).value,
            )

        return self._guard(call)

    # ------------------------------------------------------ standard DICOMweb

    def search_studies(self, *, limit: int | None = None, **filters: str) -> list[dict[str, Any]]:
        """QIDO-RS ``/studies`` (filters by keyword, e.g. ``PatientID="…"``)."""
        return self._guard(lambda: self._dicomweb.search_for_studies(
            limit=limit, search_filters=filters or None, get_remaining=limit is None))

    def search_series(self, study_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS ``/studies/{study}/series``."""
        return self._guard(lambda: self._dicomweb.search_for_series(
            study_instance_uid=study_uid))

    def search_instances(self, study_uid: str, series_uid: str | None = None,
                         **filters: str) -> list[dict[str, Any]]:
        """QIDO-RS ``/studies/{study}[/series/{series}]/instances``."""
        return self._guard(lambda: self._dicomweb.search_for_instances(
            study_instance_uid=study_uid, series_instance_uid=series_uid,
            search_filters=filters or None))

    def retrieve_study_metadata(self, study_uid: str) -> list[dict[str, Any]]:
        """WADO-RS ``/studies/{study}/metadata``."""
        return self._guard(lambda: self._dicomweb.retrieve_study_metadata(study_uid))

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Dataset]:
        """WADO-RS ``/studies/{study}/series/{series}`` (as stored, any transfer syntax)."""
        return self._guard(lambda: self._dicomweb.retrieve_series(
            study_uid, series_uid, media_types=(("application/dicom", "*"),)))

    def retrieve_study(self, study_uid: str) -> list[Dataset]:
        """WADO-RS ``/studies/{study}`` one series at a time (cancellable between series)."""
        datasets: list[Dataset] = []
        for series in self.search_series(study_uid):
            series_uid = _first_value(series, "0020000E")
            if series_uid:
                datasets += self.retrieve_series(study_uid, series_uid)
        return datasets

    def rendered(self, study_uid: str, series_uid: str, sop_uid: str, *,
                 viewport: tuple[int, int] | None = None) -> bytes:
        """WADO-RS ``…/instances/{sop}/rendered`` as PNG (or what the node gives)."""
        params = {"viewport": f"{viewport[0]},{viewport[1]}"} if viewport else None
        return self._guard(lambda: self._dicomweb.retrieve_instance_rendered(
            study_uid, series_uid, sop_uid, media_types=("image/png",), params=params))

    def thumbnail(self, study_uid: str, series_uid: str, sop_uid: str, *,
                  size: int = 128) -> bytes:
        """WADO-RS ``…/thumbnail``; falls back to ``…/rendered`` with a viewport."""
        path = (f"/studies/{self._uid(study_uid, 'study')}/series/{self._uid(series_uid, 'series')}"
                f"/instances/{self._uid(sop_uid, 'instance')}/thumbnail")
        try:
            return self._guard(lambda: self._request(
                "GET", path, params={"viewport": f"{size},{size}"},
                headers={"Accept": "image/png, image/jpeg"}).content)
        except (NotFound, BadQuery):
            return self.rendered(study_uid, series_uid, sop_uid, viewport=(size, size))

    def series_of_instance(self, study_uid: str, sop_uid: str) -> str:
        """The series UID of an instance (QIDO-RS), for a thumbnail of a study-level case."""
        found = self.search_instances(study_uid, SOPInstanceUID=sop_uid)
        for item in found:
            series = _first_value(item, "0020000E")
            if series:
                return series
        raise NotFound(f"Instance {sop_uid} is not on the node.", status=404)

    # ------------------------------------------------------ similar-case extension

    def similar_to_study(self, study_uid: str, *, query: SimilarQuery) -> SimilarResult:
        """``GET /studies/{study}/similar``."""
        return self._similar("GET", f"/studies/{self._uid(study_uid, 'study')}/similar", query)

    def similar_to_series(self, study_uid: str, series_uid: str, *,
                          query: SimilarQuery) -> SimilarResult:
        """``GET /studies/{study}/series/{series}/similar``."""
        return self._similar(
            "GET", f"/studies/{self._uid(study_uid, 'study')}"
                   f"/series/{self._uid(series_uid, 'series')}/similar", query)

    def similar_to_instance(self, study_uid: str, series_uid: str, sop_uid: str, *,
                            query: SimilarQuery) -> SimilarResult:
        """``GET /studies/{study}/series/{series}/instances/{sop}/similar``."""
        return self._similar(
            "GET", f"/studies/{self._uid(study_uid, 'study')}"
                   f"/series/{self._uid(series_uid, 'series')}"
                   f"/instances/{self._uid(sop_uid, 'instance')}/similar", query)

    def similar_to_image(self, body: bytes | Dataset, *, query: SimilarQuery,
                         content_type: str = "application/dicom") -> SimilarResult:
        """``POST /similar?level=…`` with a DICOM data set, PNG or JPEG body."""
        if isinstance(body, Dataset):
            body, content_type = encode_dataset(body), "application/dicom"
        if not body:
            raise BadQuery("There is no image to search with.", status=0,
                           hint="Open a study with at least one image.")
        return self._similar(
            "POST", "/similar", query, extra=[("level", LevelValues(query.level).value)],
            data=body, content_type=content_type,
        )

    def similar_to_text(self, text: str, *, query: SimilarQuery,
                        hybrid: bool = True) -> SimilarResult:
        """``GET /similar?text=…&level=…&hybrid=…``."""
        text = text.strip()
        if not text:
            raise BadQuery("The text query is empty.", status=0, hint="Type a few words to search.")
        extra = [("text", text), ("level", LevelValues(query.level).value),
                 ("hybrid", "true" if hybrid else "false")]
        return self._similar("GET", "/similar", query, extra=extra)

    def report(self, study_uid: str) -> Report | None:
        """``GET /studies/{study}/report``; ``None`` when the study has no report."""
        def call() -> Report:
            body = self._request("GET", f"/studies/{self._uid(study_uid, 'study')}/report",
                                 headers={"Accept": "application/json"}).json()
            return Report(
                study_instance_uid=str(body.get("StudyInstanceUID") or study_uid),
                text=str(body.get("text") or ""),
                labels=tuple(str(x) for x in body.get("labels") or ()),
                source=str(body.get("source") or ""),
            )
        try:
            return self._guard(call)
        except NotFound:
            return None

    def send_kos(self, study_uid: str, *, query: SimilarQuery,
                 destination: str | None = None) -> KosResult:
        """``POST /studies/{study}/similar/kos``: write (and send) the answer as a KOS."""
        body: dict[str, Any] = {"limit": query.limit, "excludePatient": query.exclude_patient}
        if destination:
            body["destination"] = destination
        if query.modality:
            body["Modality"] = query.modality
        if query.body_part:
            body["BodyPartExamined"] = query.body_part
        if query.study_date.strip("-"):
            body["StudyDate"] = query.study_date
        if query.positive:
            body["positive"] = list(query.positive)
        if query.negative:
            body["negative"] = list(query.negative)

        def call() -> KosResult:
            data = self._request("POST", f"/studies/{self._uid(study_uid, 'study')}/similar/kos",
                                 json_body=body, headers={"Accept": "application/json"}).json()
            return KosResult(
                sop_instance_uid=str(data.get("SOPInstanceUID") or ""),
                series_instance_uid=str(data.get("SeriesInstanceUID") or ""),
                sent_to=data.get("sent_to") or None,
                raw=data,
            )

        return self._guard(call)

    def destinations(self) -> list[str]:
        """AE titles the node can send a KOS to (``GET /config/destination``).

        That route needs an admin token; with a read token (or on a node that does
        not list them) this is empty and the panel lets the user type an AE title.
        """
        root = self.base_url.removesuffix("/dicom-web")

        def call() -> list[str]:
            data = self._request("GET", f"{root}/config/destination",
                                 headers={"Accept": "application/json"}).json()
            titles: list[str] = []
            for item in data if isinstance(data, list) else []:
                title = item.get("ae_title") if isinstance(item, Mapping) else item
                if title:
                    titles.append(str(title))
            return titles
        try:
            return self._guard(call)
        except (NotFound, BadQuery, NodeFailed, TokenRefused):
            return []


def _first_value(item: Mapping[str, Any], tag: str) -> str:
    element = item.get(tag) or {}
    values = element.get("Value") if isinstance(element, Mapping) else None
    return str(values[0]) if values else ""


def encode_dataset(ds: Dataset) -> bytes:
    """A data set as a DICOM Part 10 file (for ``POST /similar``)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=False)
    return buffer.getvalue()


def pick_representative(datasets: Sequence[Dataset]) -> Dataset:
    """The image a local-only study is searched with: the middle image of its largest series."""
    images = [ds for ds in datasets if "PixelData" in ds]
    if not images:
        raise BadQuery("The study has no images to search with.", status=0,
                       hint="Open a study with at least one image.")
    by_series: dict[str, list[Dataset]] = {}
    for ds in images:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    largest = max(by_series.values(), key=len)
    largest.sort(key=lambda d: int(d.get("InstanceNumber") or 0))
    return largest[len(largest) // 2]


def read_dataset(data: bytes) -> Dataset:
    """Bytes of a DICOM file → Dataset (used by tests and the host)."""
    return dcmread(io.BytesIO(data), force=True)
