"""What the viewer asks the node, as plain functions a worker thread runs. No Qt here.

Each task takes plain data (the :class:`~viewer_plugin.connection.NodeSettings`, UIDs,
a :class:`~viewer_plugin.model.QueryRequest`…) followed by the
:class:`~viewer_plugin.connection.CancelToken` and a ``progress`` callable, builds its
own client (no session is shared across threads) and returns plain data. The panel
and the host bind the leading arguments with :func:`functools.partial` and hand the
result to :class:`viewer_plugin._worker.TaskRunner`; nothing here can reach a widget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydicom import Dataset

from viewer_plugin._datasets import pick_representative
from viewer_plugin.cases import KosResult, Report, SimilarCase, SimilarResult
from viewer_plugin.client import PrecedentClient, first_value
from viewer_plugin.connection import CancelToken, NodeSettings
from viewer_plugin.errors import NotFound, PrecedentError, QueryCancelled
from viewer_plugin.model import QueryKindValues, QueryRequest
from viewer_plugin.query import LevelValues, SimilarQuery
from viewer_plugin.study_search import StudyPage, StudySearch

__all__ = [
    "Progress",
    "fetch_report",
    "fetch_thumbnails",
    "find_similar",
    "kos_series_in_study",
    "list_destinations",
    "retrieve_study",
    "run_query",
    "search_studies",
    "send_kos",
    "study_is_on_node",
]

Progress = Callable[[Any], None]


def _number(item: Mapping[str, Any], tag: str) -> int:
    try:
        return int(float(first_value(item, tag) or 0))
    except ValueError:
        return 0


def _no_images() -> PrecedentError:
    return NotFound("The node has no images for this study.", status=404)


def run_query(client: PrecedentClient, request: QueryRequest) -> SimilarResult:
    """Run one panel query with ``client``.

    A stored study at series or image level without the host's current image is
    searched with its largest series, and within it its middle image.
    """
    query = request.query
    if request.kind is QueryKindValues.TEXT:
        return client.similar_to_text(request.text, query=query, hybrid=request.hybrid)
    if request.kind is QueryKindValues.UPLOAD:
        return client.similar_to_image(pick_representative(request.datasets), query=query)
    level = LevelValues(query.level)
    study = request.study_uid
    if level is LevelValues.STUDY:
        return client.similar_to_study(study, query=query)
    series, sop = request.series_uid, request.sop_uid
    if not series:  # the largest series of the study
        found = client.search_series(study)
        found.sort(key=lambda s: _number(s, "00201209"), reverse=True)
        if not found:
            raise _no_images()
        series = first_value(found[0], "0020000E")
    if level is LevelValues.SERIES:
        return client.similar_to_series(study, series, query=query)
    if not sop:  # the middle image of the series
        instances = client.search_instances(study, series)
        instances.sort(key=lambda i: _number(i, "00200013"))
        if not instances:
            raise _no_images()
        sop = first_value(instances[len(instances) // 2], "00080018")
    return client.similar_to_instance(study, series, sop, query=query)


def find_similar(settings: NodeSettings, request: QueryRequest, cancel: CancelToken,
                 _progress: Progress) -> SimilarResult:
    """The panel's query (:func:`run_query`) with a client of its own."""
    with PrecedentClient(settings, cancel=cancel) as client:
        return run_query(client, request)


def fetch_thumbnails(settings: NodeSettings, cases: Sequence[SimilarCase], size: int,
                     cancel: CancelToken, progress: Progress) -> int:
    """Each case's thumbnail, reported as ``progress((index, png_bytes))``; how many came.

    One missing thumbnail is not an error for the query: it is skipped.
    """
    shown = 0
    with PrecedentClient(settings, cancel=cancel) as client:
        for index, case in enumerate(cases):
            if not case.best_instance_uid:
                continue
            try:
                series = case.best_series_uid or client.series_of_instance(
                    case.study_instance_uid, case.best_instance_uid)
                data = client.thumbnail(case.study_instance_uid, series,
                                        case.best_instance_uid, size=size)
            except QueryCancelled:
                raise
            except PrecedentError:
                continue
            progress((index, data))
            shown += 1
    return shown


def fetch_report(settings: NodeSettings, study_uid: str, cancel: CancelToken,
                 _progress: Progress) -> Report | None:
    """A study's whole report, ``None`` when it has none."""
    with PrecedentClient(settings, cancel=cancel) as client:
        return client.report(study_uid)


def send_kos(settings: NodeSettings, study_uid: str, query: SimilarQuery,
             destination: str | None, cancel: CancelToken, _progress: Progress) -> KosResult:
    """Write the study's similar cases as a KOS on the node (and send it)."""
    with PrecedentClient(settings, cancel=cancel) as client:
        return client.send_kos(study_uid, query=query, destination=destination)


def kos_series_in_study(settings: NodeSettings, study_uid: str, cancel: CancelToken,
                        _progress: Progress) -> list[str]:
    """The "Similar cases" KOS series the node already holds for a study."""
    with PrecedentClient(settings, cancel=cancel) as client:
        return client.kos_series(study_uid)


def list_destinations(settings: NodeSettings, cancel: CancelToken,
                      _progress: Progress) -> list[str]:
    """The AE titles the node can send a KOS to."""
    with PrecedentClient(settings, cancel=cancel) as client:
        return client.destinations()


def retrieve_study(settings: NodeSettings, study_uid: str, cancel: CancelToken,
                   _progress: Progress) -> list[Dataset]:
    """Every instance of a study (WADO-RS, series by series)."""
    with PrecedentClient(settings, cancel=cancel) as client:
        datasets = client.retrieve_study(study_uid)
    if not datasets:
        raise NotFound(f"The node has no study {study_uid}.", status=404)
    return datasets


def study_is_on_node(settings: NodeSettings, study_uid: str, cancel: CancelToken,
                     _progress: Progress) -> bool:
    """Whether the node holds a study (QIDO-RS)."""
    with PrecedentClient(settings, cancel=cancel) as client:
        return bool(client.search_studies(StudyInstanceUID=study_uid))


def search_studies(settings: NodeSettings, search: StudySearch, cancel: CancelToken,
                   _progress: Progress) -> StudyPage:
    """One page of the study browser's search."""
    with PrecedentClient(settings, cancel=cancel) as client:
        return client.search_study_page(search)
