"""Fixtures shared by the whole suite: a real node on free ports, with a small
random-weight open_clip model loaded through the same ``local-dir:`` path a hospital
uses for the real BiomedCLIP weights. Peers (Orthanc, dcmtk) live in ``tests/_peers``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from indexer import queue
from node.settings import Settings, load_settings
from node.supervisor import Node
from tests._synthetic import SyntheticStudy, make_studies, to_bytes

pytest_plugins = ["tests._peers", "tests._logs", "tests._postgres"]

#: the catalog back ends; a directory whose tests run on both overrides ``catalog_url``
#: (and ``session_catalog_url``) with ``params=BACKENDS`` (tests/web/conftest.py)
BACKENDS = ["sqlite", "postgresql"]

ASSETS = Path(__file__).parent / "assets"
TINY_MODEL_CONFIG = ASSETS / "models" / "tiny"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``local-dir:`` open_clip folder: the shipped tiny config with random weights."""
    from tests._models import write_random_model_dir

    return write_random_model_dir(TINY_MODEL_CONFIG, tmp_path_factory.mktemp("tiny-model"))


def catalog_for(request: pytest.FixtureRequest, backend: str) -> str | None:
    """The ``[catalog] url`` of ``backend``: ``None`` (SQLite in the data folder), or a
    fresh database on the session's PostgreSQL (dropped with the fixture's scope)."""
    if backend == "sqlite":
        return None
    from tests._postgres import PostgresServer

    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    request.addfinalizer(lambda: server.drop_database(url))
    return url


@pytest.fixture
def catalog_url() -> str | None:
    """The catalog the nodes of a test keep: SQLite in the data folder (``None``) unless
    the test's directory runs on both back ends."""
    return None


@pytest.fixture(scope="session")
def session_catalog_url() -> str | None:
    """The catalog of the session's shared node (``running_node``)."""
    return None


@dataclass
class RunningNode:
    """A node started in this process on free loopback ports."""

    node: Node
    settings: Settings
    http_url: str
    dimse_port: int
    admin_token: str | None = None
    read_token: str | None = None
    _extra: dict[str, Any] = field(default_factory=dict)

    @property
    def services(self):  # type: ignore[no-untyped-def]
        return self.node.services

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    @property
    def ae_title(self) -> str:
        return self.settings.node.ae_title

    @property
    def data_dir(self) -> Path:
        return self.settings.node.data_dir

    def counts(self) -> dict[str, Any]:
        return queue.counts(self.services.connections.get()).to_dict()

    def wait_model(self, timeout: float = 120.0) -> None:
        if not self.services.model.ready.wait(timeout):
            raise TimeoutError(f"model not ready: {self.services.model.reason}")

    def wait_indexed(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until nothing is pending or in progress on the work queue."""
        self.wait_model(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = queue.counts(self.services.connections.get())
            if c.pending == 0 and c.in_progress == 0:
                return c.to_dict()
            time.sleep(0.1)
        raise TimeoutError(f"queue not drained: {self.counts()}")

    def seed_demo(self, n_studies: int = 8, *, instances_per_study: int = 2,
                  seed: int = 0) -> list[SyntheticStudy]:
        """Store synthetic CT studies (findings cycling through ``FINDINGS``) with their
        reports and labels, and wait until they are indexed. Returns the studies."""
        from node.storage.study_reports import Report, attach_report

        studies = list(make_studies(n_studies, instances_per_study=instances_per_study,
                                    seed=seed))
        conn = self.services.connections.get()
        for study in studies:
            for ds in study.datasets:
                self.services.ingest.store(to_bytes(ds), source="SEED")
            attach_report(conn, Report(study.study_instance_uid, study.report,
                                       labels=(study.finding,)))
        self.wait_indexed()
        return studies

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.http_url, headers=headers, timeout=60)

    def stop(self) -> None:
        self.node.stop()


def start_node(data_dir: Path, model_dir: Path | None, *,
               clock: Callable[[], datetime] | None = None, catalog_url: str | None = None,
               **overrides: Any) -> RunningNode:
    """Start a node: ``overrides`` are settings sections, e.g. ``node={"ae_title": "X"}``;
    ``clock`` is the node's local time (the default: the machine's); ``catalog_url`` a
    PostgreSQL catalog (the default: SQLite in ``data_dir``)."""
    from tests._peers import free_port

    dimse_port, http_port = free_port(), free_port()
    values: dict[str, Any] = {
        "node": {"ae_title": "PRECEDENT", "host": "127.0.0.1", "dimse_port": dimse_port,
                 "data_dir": data_dir, "allow_any_source": True,
                 "free_space_reserve_mb": 0, "stable_after_s": 1.0, "timeout_s": 30},
        "http": {"host": "127.0.0.1", "port": http_port},
        "worker": {"decode_processes": 0, "poll_interval_s": 0.05, "batch_size": 16},
        # torch fp32: the CPU engine's export costs seconds per data folder; the engine's
        # own tests (tests/node/test_model_engine.py) start nodes with engine = "openvino"
        "model": {"name": f"local-dir:{model_dir}" if model_dir else "local-dir:/nonexistent",
                  "precision": "fp32", "batch_size": 16, "engine": "torch"},
        # the tiny model's weights are random: its image–text cosines mean nothing, so
        # text queries get no floor unless a test sets one (the floor has its own tests)
        "retrieval": {"text_min_score": -1.0},
        "catalog": {"url": catalog_url},
    }
    for section, items in overrides.items():
        values.setdefault(section, {}).update(items)
    settings = load_settings(None, values)
    node = Node(settings) if clock is None else Node(settings, clock=clock)
    node.start()
    if not node.wait_http(30):
        node.stop()
        raise RuntimeError("the node's HTTP server did not start")
    # the node's own settings: its admin token is made at the first start when unset
    return RunningNode(node, node.settings, f"http://127.0.0.1:{http_port}", dimse_port,
                       admin_token=node.settings.http.admin_token,
                       read_token=settings.http.read_token)


@pytest.fixture
def make_node(request: pytest.FixtureRequest, tmp_path: Path, tiny_model_dir: Path,
              catalog_url: str | None) -> Iterator[Callable[..., RunningNode]]:
    """Factory: ``make_node(**overrides)`` starts a node; all are stopped at the end.

    ``model=None`` as keyword ``no_model=True`` starts one whose model cannot load. On
    PostgreSQL each data folder keeps its own database, as each keeps its own SQLite
    file: the first ``catalog_url``, another folder a fresh one, the same folder again
    (a restart) the same one.
    """
    started: list[RunningNode] = []
    catalogs: dict[Path, str | None] = {}
    created: list[tuple[Any, str]] = []  # (server, URL): dropped once the nodes stopped

    def make(*, no_model: bool = False, data_dir: Path | None = None,
             **overrides: Any) -> RunningNode:
        folder = data_dir or tmp_path / f"node{len(started)}"
        if folder not in catalogs:
            catalogs[folder] = catalog_url
            if len(catalogs) > 1 and catalog_url is not None:
                server = request.getfixturevalue("postgres_server")
                created.append((server, server.create_database()))
                catalogs[folder] = created[-1][1]
        overrides.setdefault("catalog_url", catalogs[folder])
        running = start_node(folder, None if no_model else tiny_model_dir, **overrides)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()
    for server, url in created:
        server.drop_database(url)


@pytest.fixture(scope="session")
def running_node(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
    session_catalog_url: str | None,
) -> Iterator[RunningNode]:
    """One node shared by the tests that only read (session scope)."""
    running = start_node(tmp_path_factory.mktemp("shared-node"), tiny_model_dir,
                         catalog_url=session_catalog_url)
    running.wait_model()
    yield running
    running.stop()
