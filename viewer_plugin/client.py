"""The Qt-free client of the node: standard DICOMweb calls and the similar-case extension.

Standard DICOMweb calls (QIDO-RS searches, WADO-RS series, rendered) go through
``dicomweb_client.DICOMwebClient``; the similar-case extension, reports, thumbnails
and the KOS route go through the *same* ``requests.Session``
(:class:`viewer_plugin._transport.Transport`), which carries the bearer token. Every
failure leaves this module as a :mod:`viewer_plugin.errors` exception with a
plain-words message. Answers are parsed by :mod:`viewer_plugin.cases` and
:mod:`viewer_plugin.study_search`.

The client is cheap to build; the panel builds one per background task, so no
session is ever shared across threads.

    client = PrecedentClient(NodeSettings(url="http://127.0.0.1:8080", token="…"))
    result = client.similar_to_study(study_uid, query=SimilarQuery(limit=10))
    for case in result.cases: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self, TypeVar

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset

from viewer_plugin._datasets import encode_dataset, pick_representative
from viewer_plugin._transport import Transport, uid_segment
from viewer_plugin.cases import (
    KosResult,
    Report,
    SimilarResult,
    parse_consensus,
    parse_kos_result,
    parse_report,
    parse_similar_cases,
)
from viewer_plugin.connection import CancelToken, NodeSettings, dicomweb_base_url
from viewer_plugin.errors import BadQuery, NodeFailed, NotFound, TokenRefused
from viewer_plugin.query import LevelValues, SimilarQuery
from viewer_plugin.study_search import STUDY_FIELDS, StudyPage, StudySearch, parse_study_row

__all__ = [
    "KOS_SERIES_DESCRIPTION",
    "CancelToken",
    "LevelValues",
    "NodeSettings",
    "PrecedentClient",
    "SimilarQuery",
    "dicomweb_base_url",
    "pick_representative",
]

T = TypeVar("T")

#: the Series Description of the KOS series the node writes (``docs/api.md``)
KOS_SERIES_DESCRIPTION = "Similar cases"


def first_value(item: Mapping[str, Any], tag: str) -> str:
    """The first value of ``tag`` in a DICOM JSON object, as text (``""`` when absent)."""
    element = item.get(tag) or {}
    values = element.get("Value") if isinstance(element, Mapping) else None
    return str(values[0]) if values else ""


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
        self._http = Transport(settings, session=session, cancel=cancel)
        self._dicomweb = DICOMwebClient(
            url=self._http.base_url, session=self._http.session, timeout=settings.timeout
        )
        # the viewer shows errors at once; no silent exponential back-off on 503
        self._dicomweb.set_http_retry_params(retry=False)

    @property
    def settings(self) -> NodeSettings:
        return self._http.settings

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def cancel_token(self) -> CancelToken:
        return self._http.cancel_token

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _guard(self, call: Callable[[], T]) -> T:
        return self._http.guard(call)

    # ------------------------------------------------------ standard DICOMweb

    def search_studies(self, *, limit: int | None = None, **filters: str) -> list[dict[str, Any]]:
        """QIDO-RS ``/studies`` (filters by keyword, e.g. ``PatientID="…"``)."""
        return self._guard(lambda: self._dicomweb.search_for_studies(
            limit=limit, search_filters=filters or None, get_remaining=limit is None))

    def search_study_page(self, search: StudySearch) -> StudyPage:
        """One page of QIDO-RS ``/studies`` for the study browser.

        Asks for one study more than the page holds, to know whether there is a next page.
        """
        def call() -> StudyPage:
            items = self._dicomweb.search_for_studies(
                limit=search.page_size + 1, offset=search.offset, fields=list(STUDY_FIELDS),
                search_filters=search.filters() or None, get_remaining=False)
            rows = tuple(parse_study_row(item) for item in items)
            return StudyPage(search, rows[: search.page_size], len(rows) > search.page_size)

        return self._guard(call)

    def search_series(self, study_uid: str, **filters: str) -> list[dict[str, Any]]:
        """QIDO-RS ``/studies/{study}/series``."""
        return self._guard(lambda: self._dicomweb.search_for_series(
            study_instance_uid=study_uid, search_filters=filters or None))

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
            series_uid = first_value(series, "0020000E")
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
        path = (f"/studies/{uid_segment(study_uid, 'study')}"
                f"/series/{uid_segment(series_uid, 'series')}"
                f"/instances/{uid_segment(sop_uid, 'instance')}/thumbnail")
        try:
            return self._guard(lambda: self._http.request(
                "GET", path, params={"viewport": f"{size},{size}"},
                headers={"Accept": "image/png, image/jpeg"}).content)
        except (NotFound, BadQuery):
            return self.rendered(study_uid, series_uid, sop_uid, viewport=(size, size))

    def series_of_instance(self, study_uid: str, sop_uid: str) -> str:
        """The series UID of an instance (QIDO-RS), for a thumbnail of a study-level case."""
        for item in self.search_instances(study_uid, SOPInstanceUID=sop_uid):
            series = first_value(item, "0020000E")
            if series:
                return series
        raise NotFound(f"Instance {sop_uid} is not on the node.", status=404)

    def kos_series(self, study_uid: str) -> list[str]:
        """The Series Instance UIDs of the node's "Similar cases" KOS series in a study."""
        def call() -> list[str]:
            found = self._dicomweb.search_for_series(
                study_instance_uid=study_uid, fields=["SeriesDescription"],
                search_filters={"Modality": "KO"})
            return [first_value(s, "0020000E") for s in found
                    if first_value(s, "0008103E") == KOS_SERIES_DESCRIPTION]

        return self._guard(call)

    # ------------------------------------------------------ similar-case extension

    def _similar(self, method: str, path: str, query: SimilarQuery,
                 extra: Iterable[tuple[str, str]] = (), *, data: bytes | None = None,
                 content_type: str | None = None) -> SimilarResult:
        params = list(query.params()) + list(extra)
        headers = {"Accept": "application/dicom+json, application/json"}
        if content_type:
            headers["Content-Type"] = content_type

        def call() -> SimilarResult:
            response = self._http.request(method, path, params=params, data=data,
                                          headers=headers)
            items = response.json() if response.content else []
            return SimilarResult(
                cases=parse_similar_cases(items),
                consensus=parse_consensus(response.headers.get("Precedent-Consensus")),
                level=LevelValues(query.level).value,
            )

        return self._guard(call)

    def similar_to_study(self, study_uid: str, *, query: SimilarQuery) -> SimilarResult:
        """``GET /studies/{study}/similar``."""
        return self._similar("GET", f"/studies/{uid_segment(study_uid, 'study')}/similar",
                             query)

    def similar_to_series(self, study_uid: str, series_uid: str, *,
                          query: SimilarQuery) -> SimilarResult:
        """``GET /studies/{study}/series/{series}/similar``."""
        return self._similar(
            "GET", f"/studies/{uid_segment(study_uid, 'study')}"
                   f"/series/{uid_segment(series_uid, 'series')}/similar", query)

    def similar_to_instance(self, study_uid: str, series_uid: str, sop_uid: str, *,
                            query: SimilarQuery) -> SimilarResult:
        """``GET /studies/{study}/series/{series}/instances/{sop}/similar``."""
        return self._similar(
            "GET", f"/studies/{uid_segment(study_uid, 'study')}"
                   f"/series/{uid_segment(series_uid, 'series')}"
                   f"/instances/{uid_segment(sop_uid, 'instance')}/similar", query)

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
        path = f"/studies/{uid_segment(study_uid, 'study')}/report"
        try:
            return self._guard(lambda: parse_report(self._http.request(
                "GET", path, headers={"Accept": "application/json"}).json(), study_uid))
        except NotFound:
            return None

    def send_kos(self, study_uid: str, *, query: SimilarQuery,
                 destination: str | None = None) -> KosResult:
        """``POST /studies/{study}/similar/kos``: write (and send) the answer as a KOS."""
        path = f"/studies/{uid_segment(study_uid, 'study')}/similar/kos"
        body = query.kos_body(destination)
        return self._guard(lambda: parse_kos_result(self._http.request(
            "POST", path, json_body=body, headers={"Accept": "application/json"}).json()))

    def destinations(self) -> list[str]:
        """AE titles the node can send a KOS to (``GET /destinations``, read scope).

        Empty when the node lists none (or cannot be asked); the panel then lets the
        user type an AE title, and the node's default destination applies when empty.
        """
        def call() -> list[str]:
            data = self._http.request("GET", "/destinations",
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
