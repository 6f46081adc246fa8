"""Every error the node raises on purpose becomes one RFC 7807 answer, from the one
exception tree: its status, title, headers and extra members, through a real FastAPI
application with the node's problem handlers (no route knows about problems)."""

from __future__ import annotations

import inspect

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import node.errors as errors
from node.dimse.scu import DestinationUnreachable
from node.errors import PrecedentError
from node.web.problems import install_problem_handlers

PROBLEM_JSON = "application/problem+json"


def _client(exc: Exception) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/fail")
    def fail() -> None:
        raise exc

    return TestClient(app)


def _problem(exc: Exception) -> tuple[dict, dict[str, str]]:  # type: ignore[type-arg]
    response = _client(exc).get("/fail")
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == response.status_code
    return body, dict(response.headers)


@pytest.mark.parametrize("cls", [c for _, c in inspect.getmembers(errors, inspect.isclass)
                                 if issubclass(c, PrecedentError) and c is not errors.SendFailed])
def test_every_error_class_answers_its_status(cls: type[PrecedentError]) -> None:
    body, _ = _problem(cls("what to change"))
    assert body["status"] == cls.http_status
    assert body["detail"] == "what to change"
    assert body["type"] == "about:blank" and body["title"] not in ("", "Error")


def test_model_not_ready_says_when_to_retry() -> None:
    body, headers = _problem(errors.ModelNotReady("the model is loading"))
    assert (body["status"], body["title"]) == (503, "Model not loaded")
    assert headers["retry-after"] == "30"


def test_unauthorized_carries_the_challenge_and_forbidden_does_not() -> None:
    body, headers = _problem(errors.Unauthorized("send a token"))
    assert (body["status"], body["title"]) == (401, "Unauthorized")
    assert headers["www-authenticate"] == 'Bearer realm="precedent"'
    body, headers = _problem(errors.Forbidden("use the admin token"))
    assert body["status"] == 403 and "www-authenticate" not in headers


def test_headers_given_to_one_error_add_to_its_class() -> None:
    _, headers = _problem(errors.Unauthorized("x", headers={"X-Extra": "1"}))
    assert headers["x-extra"] == "1"
    assert headers["www-authenticate"] == 'Bearer realm="precedent"'
    assert errors.Unauthorized.headers == {"WWW-Authenticate": 'Bearer realm="precedent"'}


def test_a_refused_send_names_the_stored_kos() -> None:
    body, _ = _problem(errors.SendFailed("PACS refused it", sop_instance_uid="1.2.3",
                                         series_instance_uid="1.2.4"))
    assert (body["status"], body["title"]) == (502, "Bad Gateway")
    assert (body["SOPInstanceUID"], body["SeriesInstanceUID"]) == ("1.2.3", "1.2.4")


def test_an_invalid_query_names_its_attribute() -> None:
    body, _ = _problem(errors.InvalidQuery("StudyDate value 'x' is not a DA",
                                           attribute="StudyDate"))
    assert (body["status"], body["attribute"]) == (400, "StudyDate")
    body, _ = _problem(errors.InvalidQuery("limit is wrong"))
    assert "attribute" not in body


def test_an_unreachable_destination_is_a_bad_gateway() -> None:
    body, _ = _problem(DestinationUnreachable("PACS at h:104 did not accept an association"))
    assert (body["status"], body["title"]) == (502, "Destination unreachable")

