"""``GET /health``: ``ok`` only when everything works; ``degraded`` (still 200: the node
receives and stores) with a reason per thing that does not; ``starting`` is 503."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import RunningNode


def _health(node: RunningNode, until: str | None = None) -> tuple[int, dict[str, Any]]:
    """The answer, once the model's state is ``until`` (when given)."""
    with node.http() as client:
        for _ in range(300):
            response = client.get("/health")
            if until is None or response.json()["model"]["status"] == until:
                break
            time.sleep(0.1)
    return response.status_code, response.json()


def test_a_node_without_its_model_is_degraded_and_says_why(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    status, body = _health(node, until="unavailable")
    assert (status, body["status"]) == (200, "degraded")
    (reason,) = body["reasons"]
    assert reason.startswith("the model is unavailable, similar-case queries are refused: "
                             "model folder /nonexistent does not exist")
    assert "set [model] path" in reason


def test_a_node_with_everything_working_is_ok(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node()
    node.wait_model()
    status, body = _health(node, until="ready")
    assert (status, body["status"], body["reasons"]) == (200, "ok", [])
    assert body["model"]["status"] == "ready" and body["queue"]["by_state"]["failed"] == 0


def test_a_disk_under_the_reserve_is_degraded(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node(node={"free_space_reserve_mb": 1 << 30})
    node.wait_model()
    status, body = _health(node, until="ready")
    assert (status, body["status"]) == (200, "degraded")
    (reason,) = body["reasons"]
    assert "MiB free, under [node] free_space_reserve_mb (1073741824): instances are " \
        "refused until space is freed" in reason
