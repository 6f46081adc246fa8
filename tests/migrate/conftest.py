"""A data folder on the embedded SQLite catalog, filled once through a real node (ingest
with the tiny random model: vectors, reports, an instance that failed indexing, a
backfill plan), and what that node answered; each test migrates a copy of it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

import database
from tests._synthetic import make_studies, to_bytes
from tests.conftest import RunningNode, start_node

__all__ = ["Answers", "SourceFolder", "answers_of", "source"]


@dataclass(frozen=True)
class Answers:
    """What a node answered: QIDO-RS lists and similar-case queries, as JSON (its own
    address, in retrieve URLs, as ``{node}``)."""

    studies: Any
    instances: Any
    similar: dict[str, Any]
    text: Any


@dataclass(frozen=True)
class SourceFolder:
    """The filled data folder (never changed by a test: copy it) and its node's answers."""

    folder: Path
    answers: Answers
    study_uids: list[str]

    def copy(self, where: Path) -> Path:
        shutil.copytree(self.folder, where)
        return where


def answers_of(node: RunningNode, study_uids: list[str]) -> Answers:
    with node.http(node.read_token) as http:
        def get(path: str, **params: Any) -> Any:
            response = http.get(f"/dicom-web{path}", params=params)
            assert response.status_code == 200, (path, response.text)
            return json.loads(response.text.replace(node.http_url, "{node}"))

        return Answers(
            studies=get("/studies", includefield="all"),
            instances=get("/instances"),
            similar={uid: get(f"/studies/{uid}/similar") for uid in study_uids},
            text=get("/similar", text="effusion"),
        )


def _fill(node: RunningNode) -> list[str]:
    studies = node.seed_demo(n_studies=3, instances_per_study=2)
    [broken] = make_studies(1, instances_per_study=1, seed=7)
    ds = broken.datasets[0]
    # a JPEG whose one fragment is no JPEG: stored (compressed pixels are not decoded on
    # the network path), then failed by the indexer's decoder
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\xff\xd8 not a JPEG at all \xff\xd9"])
    ds["PixelData"].VR = "OB"
    node.services.ingest.store(to_bytes(ds), source="SEED")
    node.wait_indexed()
    counts = node.counts()
    assert counts["by_state"]["failed"] == 1, counts
    return [s.study_instance_uid for s in studies]


def _add_backfill_plan(catalog: Path) -> None:
    """A backfill's plan rows (its tables have composite keys), written as the plan
    module would have, and a pending duty."""
    from node.backfill._schema import ensure_schema

    conn = sqlite3.connect(catalog)
    ensure_schema(conn)
    now = time.time()
    with conn:
        conn.execute(
            "INSERT INTO backfill_jobs (source, via, retrieve, since, until, concurrency,"
            " state, created_at, updated_at) VALUES ('PACS', 'dimse', 'move', '20240101',"
            " '20240131', 2, 'running', ?, ?)", (now, now))
        for day in range(1, 4):
            conn.execute(
                "INSERT INTO backfill_windows (job_id, date_from, date_to, state, updated_at)"
                " VALUES (1, ?, ?, 'done', ?)", (f"202401{day:02d}", f"202401{day:02d}", now))
            conn.execute(
                "INSERT INTO backfill_studies (job_id, study_instance_uid, state, updated_at)"
                " VALUES (1, ?, 'pending', ?)", (f"1.2.3.{day}", now))
    conn.close()
    # a duty of a catalog event (an automatic KOS owed for a stable study)
    from node.storage import duties

    catalog_conn = database.connect(catalog)
    try:
        with database.transaction(catalog_conn):
            duties.enqueue(catalog_conn, duties.DutyKindValues.KOS, ["1.2.3.1"], now=now)
    finally:
        catalog_conn.close()


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[SourceFolder]:
    folder = tmp_path_factory.mktemp("migrate-source") / "data"
    node = start_node(folder, tiny_model_dir)
    try:
        uids = _fill(node)
        answers = answers_of(node, uids)
    finally:
        node.stop()
    _add_backfill_plan(folder / "catalog.sqlite")
    yield SourceFolder(folder, answers, uids)
