"""Fixtures of the backfill tests: the PACS (a real Orthanc loaded with synthetic studies
over several dates and modalities, capping its C-FIND answers at 5), and nodes started
with an injectable clock, declared to that PACS for C-MOVE."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from node.storage import aes
from tests._peers import Orthanc, start_orthanc
from tests.backfill._pacs import PacsStudy, load_pacs, make_pacs_studies, register_node
from tests.conftest import RunningNode, start_node

#: the shared PACS caps C-FIND answers at this many studies (windows must be split)
PACS_LIMIT = 5
#: quick retries and polls for tests (the defaults are minutes)
QUICK = {"retry_initial_s": 0.2, "retry_max_s": 1.0, "poll_s": 0.1, "timeout_s": 20.0}


@dataclass
class Pacs:
    orthanc: Orthanc
    studies: list[PacsStudy]


def _dates() -> list[str]:
    """Eight studies on one day (more than the cap: that day is split by time), eight in
    one crowded week, the others spread over a year (2022-07…2023-06)."""
    import datetime as dt

    crowded = ["20230110"] * 8 + ["20230116", "20230117", "20230118", "20230119"] * 2
    start = dt.date(2022, 7, 2)
    spread = [(start + dt.timedelta(days=4 * i)).strftime("%Y%m%d") for i in range(84)]
    return crowded + spread


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    """One Orthanc for the tests that only read from it: 100 studies, 250 instances of
    CT, MR, CR (and report series) over a year."""
    orthanc = start_orthanc(tmp_path_factory.mktemp("pacs"),
                            extra_config={"LimitFindResults": PACS_LIMIT})
    studies = make_pacs_studies(100, dates=_dates())
    load_pacs(orthanc, studies)
    yield Pacs(orthanc, studies)
    orthanc.stop()


class FakeClock:
    """The node's local time, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def start_backfill_node(data_dir: Path, model_dir: Path | None, *,
                        clock: Callable[[], datetime] | None = None,
                        **overrides: Any) -> RunningNode:
    """A node of ``tests.conftest.start_node``, with quick backfill retries and an
    optional clock."""
    backfill = {**QUICK, **overrides.pop("backfill", {})}
    return start_node(data_dir, model_dir, clock=clock, backfill=backfill, **overrides)


@pytest.fixture
def backfill_node(tmp_path: Path, request: pytest.FixtureRequest, catalog_url: str | None
                  ) -> Iterator[Callable[..., RunningNode]]:
    """Factory: ``backfill_node(pacs_orthanc, model=False, clock=None, **overrides)``
    starts a node, declares it to the PACS and the PACS to it (destination ``ORTHANC``,
    with its DICOMweb URL). Its catalog is ``catalog_url`` (a module that runs on both
    back ends overrides it; one node per test then)."""
    started: list[RunningNode] = []

    def make(orthanc: Orthanc, *, model: bool = False,
             clock: Callable[[], datetime] | None = None, **overrides: Any) -> RunningNode:
        model_dir = request.getfixturevalue("tiny_model_dir") if model else None
        overrides.setdefault("catalog_url", catalog_url if not started else None)
        node = start_backfill_node(tmp_path / f"node{len(started)}", model_dir, clock=clock,
                                   **overrides)
        started.append(node)
        register_node(orthanc, node.ae_title, node.dimse_port)
        aes.add_destination(node.services.connections.get(), "ORTHANC", host="127.0.0.1",
                            port=orthanc.dimse_port, dicomweb_url=orthanc.dicomweb_url)
        return node

    yield make
    for node in started:
        node.stop()


def wait_backfill(node: RunningNode, job_id: int, *, timeout: float = 60.0,
                  until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The backfill's status once it is no longer running (or ``until`` holds)."""
    manager = node.services.backfill
    assert manager is not None
    deadline = time.monotonic() + timeout
    while True:
        status = manager.status(job_id)
        if until(status) if until is not None else status["state"] != "running":
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {job_id} still {status['state']}: {status}")
        time.sleep(0.1)


def catalog_sops(node: RunningNode) -> set[str]:
    return {str(r[0]) for r in node.services.connections.get().execute(
        "SELECT sop_instance_uid FROM instances")}


def orthanc_sops(orthanc: Orthanc, *, since: str, until: str,
                 modalities: tuple[str, ...]) -> set[str]:
    """What Orthanc itself holds for the window and the modalities (its own query)."""
    found: set[str] = set()
    with orthanc.client() as http:
        for modality in modalities:
            answer = http.post("/tools/find", json={
                "Level": "Instance", "Expand": True,
                "Query": {"StudyDate": f"{since}-{until}", "Modality": modality}})
            answer.raise_for_status()
            found |= {i["MainDicomTags"]["SOPInstanceUID"] for i in answer.json()}
    return found
