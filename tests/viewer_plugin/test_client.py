"""The Qt-free client: URLs, parameters, and every error a user can meet, in plain words.

The node's answers here come through a ``requests`` transport adapter mounted on the
client's session (a seam injected, not patched); the real-node behaviour is covered
in ``test_panel.py``, ``test_host.py`` and ``test_study_browser.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests
from requests.adapters import BaseAdapter

from tests.viewer_plugin._standin import stand_in
from viewer_plugin.client import (
    NodeSettings,
    PrecedentClient,
    SimilarQuery,
    dicomweb_base_url,
    pick_representative,
)
from viewer_plugin.errors import (
    BadQuery,
    ModelNotLoaded,
    NodeTimeout,
    NodeUnreachable,
    NotFound,
    PrecedentError,
    QueryCancelled,
    TokenRefused,
)

Responder = Callable[[requests.PreparedRequest], requests.Response]


class Transport(BaseAdapter):
    """Answers every request with ``respond(request)`` and remembers the requests."""

    def __init__(self, respond: Responder) -> None:
        super().__init__()
        self.respond = respond
        self.seen: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        self.seen.append(request)
        response = self.respond(request)
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def answer(status: int, body: object = b"", *, ctype: str = "application/json",
           headers: dict[str, str] | None = None) -> Responder:
    def respond(_request: requests.PreparedRequest) -> requests.Response:
        r = requests.Response()
        r.status_code = status
        r._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r.headers["Content-Type"] = ctype
        r.headers.update(headers or {})
        return r
    return respond


def client_with(respond: Responder, token: str = "s3cret") -> tuple[PrecedentClient, Transport]:
    session = requests.Session()
    transport = Transport(respond)
    session.mount("http://", transport)
    return PrecedentClient(NodeSettings(url="http://node:8042", token=token),
                           session=session), transport


def problem(status: int, title: str, detail: str) -> Responder:
    return answer(status, {"type": "about:blank", "title": title, "status": status,
                           "detail": detail}, ctype="application/problem+json")


def test_the_base_url_gets_the_dicomweb_prefix_only_when_it_has_no_path() -> None:
    assert dicomweb_base_url("http://h:8042") == "http://h:8042/dicom-web"
    assert dicomweb_base_url("h:8042/") == "http://h:8042/dicom-web"
    assert dicomweb_base_url("https://h/pacs/dicom-web/") == "https://h/pacs/dicom-web"
    with pytest.raises(ValueError, match="url"):
        NodeSettings(url="ftp://h")
    with pytest.raises(ValueError, match="timeout"):
        NodeSettings(url="http://h", timeout=0)


def test_settings_never_print_the_token() -> None:
    assert "s3cret" not in repr(NodeSettings(url="http://h", token="s3cret"))


def test_query_parameters_and_the_bearer_token_reach_the_node() -> None:
    body = [{"0020000D": {"vr": "UI", "Value": ["1.2.9"]},
             "00110010": {"vr": "LO", "Value": ["PRECEDENT"]},
             "00111001": {"vr": "FD", "Value": [0.5]}, "00111002": {"vr": "IS", "Value": [1]}}]
    client, transport = client_with(answer(200, body, ctype="application/dicom+json", headers={
        "Precedent-Consensus": '{"label": "nodule", "count": 1, "of": 1}'}))
    result = client.similar_to_study("1.2.3", query=SimilarQuery(
        limit=5, modality="CT", study_date="20200101-", positive=("1.2.9", "1.2.8"),
        negative=("1.2.7",)))
    sent = transport.seen[0]
    assert sent.headers["Authorization"] == "Bearer s3cret"
    assert sent.url is not None and sent.url.startswith(
        "http://node:8042/dicom-web/studies/1.2.3/similar?")
    for part in ("limit=5", "Modality=CT", "StudyDate=20200101-", "excludePatient=true",
                 "positive=1.2.9", "positive=1.2.8", "negative=1.2.7"):
        assert part in sent.url
    assert [c.study_instance_uid for c in result.cases] == ["1.2.9"]
    assert result.consensus is not None and result.consensus.line == "1 of 1 similar case: nodule"


def test_text_and_upload_queries() -> None:
    client, transport = client_with(answer(200, [], ctype="application/dicom+json"))
    client.similar_to_text("right pneumothorax", query=SimilarQuery(level="series"), hybrid=False)
    url = transport.seen[-1].url or ""
    assert "/dicom-web/similar?" in url and "text=right+pneumothorax" in url
    assert "level=series" in url and "hybrid=false" in url

    from pydicom import examples
    client.similar_to_image(pick_representative([examples.ct]), query=SimilarQuery())
    sent = transport.seen[-1]
    assert sent.method == "POST" and sent.headers["Content-Type"] == "application/dicom"
    assert isinstance(sent.body, bytes) and sent.body[128:132] == b"DICM"
    assert "level=study" in (sent.url or "")


@pytest.mark.parametrize(("respond", "kind", "words"), [
    (problem(401, "Unauthorized", "invalid bearer token"), TokenRefused, "refused the access token"),
    (problem(403, "Forbidden", "admin scope needed"), TokenRefused, "not allowed"),
    (problem(404, "Not Found", "study 1.2.3 is not on this node"), NotFound,
     "study 1.2.3 is not on this node"),
    (problem(400, "Bad Request", "StudyDate must be YYYYMMDD"), BadQuery,
     "StudyDate must be YYYYMMDD"),
    (problem(503, "Service Unavailable", "model not loaded: weights missing"), ModelNotLoaded,
     "model not loaded: weights missing"),
    (answer(503, b"<html>proxy</html>", ctype="text/html"), ModelNotLoaded, "model is not loaded"),
])
def test_errors_say_what_happened_and_what_to_do(
        respond: Responder, kind: type[PrecedentError], words: str) -> None:
    client, _ = client_with(respond)
    with pytest.raises(kind) as info:
        client.similar_to_study("1.2.3", query=SimilarQuery())
    assert words in info.value.message
    assert info.value.hint  # always something to do
    assert "s3cret" not in str(info.value)


def test_a_missing_report_is_none_and_a_bad_uid_never_reaches_the_node() -> None:
    client, transport = client_with(problem(404, "Not Found", "no report"))
    assert client.report("1.2.3") is None
    with pytest.raises(BadQuery, match="not a DICOM UID"):
        client.similar_to_study("../etc/passwd", query=SimilarQuery())
    assert len(transport.seen) == 1


def test_an_unreachable_node_says_so() -> None:
    from tests._peers import free_port

    client = PrecedentClient(NodeSettings(url=f"http://127.0.0.1:{free_port()}", timeout=2))
    with pytest.raises(NodeUnreachable) as info:
        client.similar_to_study("1.2.3", query=SimilarQuery())
    assert "Cannot reach the Precedent node" in info.value.message
    assert "node URL" in info.value.hint


def test_a_slow_node_times_out_with_a_plain_message() -> None:
    with stand_in(delay_s=2.0) as node:
        client = PrecedentClient(NodeSettings(url=node.url, timeout=0.3))
        with pytest.raises(NodeTimeout, match=r"did not answer within 0\.3 s"):
            client.similar_to_text("anything", query=SimilarQuery())


def test_a_refused_token_is_told_apart_from_a_missing_one() -> None:
    with stand_in(token="right") as node:
        with pytest.raises(TokenRefused, match="refused the access token"):
            PrecedentClient(NodeSettings(url=node.url, token="wrong")).similar_to_text(
                "x", query=SimilarQuery())
        with pytest.raises(TokenRefused, match="needs an access token"):
            PrecedentClient(NodeSettings(url=node.url)).similar_to_text("x", query=SimilarQuery())
        result = PrecedentClient(NodeSettings(url=node.url, token="right")).similar_to_text(
            "1.2.5", query=SimilarQuery())
        assert result.cases[0].study_instance_uid == "1.2.5"


def test_a_cancelled_client_makes_no_more_calls() -> None:
    client, transport = client_with(answer(200, []))
    client.cancel_token.cancel()
    with pytest.raises(QueryCancelled):
        client.similar_to_study("1.2.3", query=SimilarQuery())
    assert transport.seen == []


def test_query_parameters_are_validated_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="limit"):
        SimilarQuery(limit=0)
    with pytest.raises(ValueError):
        SimilarQuery(level="organ")


def test_a_study_page_asks_one_more_than_it_shows() -> None:
    from viewer_plugin.study_search import StudySearch

    studies = [{"0020000D": {"vr": "UI", "Value": [f"1.2.{i}"]}} for i in range(3)]
    client, transport = client_with(answer(200, studies, ctype="application/dicom+json"))
    page = client.search_study_page(StudySearch(patient_id="P1", page_size=2, page=1))
    url = transport.seen[-1].url or ""
    assert "/dicom-web/studies?" in url
    for part in ("limit=3", "offset=2", "PatientID=P1", "includefield=StudyDescription"):
        assert part in url
    assert [r.study_instance_uid for r in page.rows] == ["1.2.0", "1.2.1"]
    assert page.has_more


def test_only_the_nodes_similar_cases_kos_counts_as_sent_before() -> None:
    series = [
        {"0020000E": {"vr": "UI", "Value": ["2.25.1"]},
         "0008103E": {"vr": "LO", "Value": ["Similar cases"]}},
        {"0020000E": {"vr": "UI", "Value": ["2.25.2"]},
         "0008103E": {"vr": "LO", "Value": ["Teaching file"]}},
    ]
    client, transport = client_with(answer(200, series, ctype="application/dicom+json"))
    assert client.kos_series("1.2.3") == ["2.25.1"]
    url = transport.seen[-1].url or ""
    assert "/studies/1.2.3/series?" in url and "Modality=KO" in url


def test_destinations_come_from_the_read_scope_route() -> None:
    client, transport = client_with(answer(200, [{"ae_title": "PACS", "default": True}]))
    assert client.destinations() == ["PACS"]
    assert (transport.seen[-1].url or "").endswith("/dicom-web/destinations")
    refused, _ = client_with(problem(403, "Forbidden", "admin scope needed"))
    assert refused.destinations() == []
