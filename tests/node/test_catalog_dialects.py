"""What the catalog does differently, or must do alike, on its two dialects: the reports'
full-text ranking (BM25 over FTS5 on SQLite, ``ts_rank_cd`` over a tsvector on
PostgreSQL) and, on PostgreSQL only, two ingests into one study at once: a real
serialization failure, run again, so both instances are stored."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

import database
from indexer import queue
from node.storage import Ingest, StoreOutcomeValues, connect
from node.storage.study_reports import Report, attach_reports, search_reports
from tests._synthetic import ct_instance, to_bytes
from tests.conftest import BACKENDS, catalog_for

STUDY = "1.2.826.0.1.3680043.78.1"


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> database.Target:
    return catalog_for(request, request.param) or tmp_path / "catalog.sqlite"


def test_report_search_ranks_the_report_holding_more_of_the_words_first(
        target: database.Target) -> None:
    conn = connect(target)
    attach_reports(conn, [
        Report("1.1", "Normal chest. No effusion."),
        Report("1.2", "Small pneumothorax."),
        Report("1.3", "Apical pneumothorax; chest drain."),
    ])
    assert search_reports(conn, "pneumothorax apical", 10)[:2] == ["1.3", "1.2"]
    assert set(search_reports(conn, "pneumothorax apical", 10)) == {"1.2", "1.3"}
    assert search_reports(conn, "CHEST", 10)[0] in {"1.1", "1.3"}  # case folded
    assert set(search_reports(conn, "chest", 1)) <= {"1.1", "1.3"}  # the limit holds
    assert search_reports(conn, "osteoporosis", 10) == []
    # the words of any text are searched (quotes, operators, punctuation are not syntax)
    assert set(search_reports(conn, "it's (pneumothorax) & | ! :* \"x", 10)) == {"1.2", "1.3"}
    assert search_reports(conn, "?!", 10) == []


def _waiting_for_locks(url: str) -> int:
    conn = database.connect(url)
    try:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND wait_event_type = 'Lock'").fetchone()
        return int(row[0])
    finally:
        conn.close()


def test_two_ingests_into_one_study_collide_and_both_are_stored(
        tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The first ingest's transaction is held (a trigger waits on an advisory lock the
    test holds) until the second one waits on the study row the first wrote: released,
    the first commits and the second fails to serialize, is run again and succeeds."""
    caplog.set_level(logging.DEBUG, logger="database")
    ingest = Ingest(data_dir=tmp_path, catalog=postgres_url)
    gate = database.connect(postgres_url)
    gate.execute("CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "PERFORM pg_advisory_lock_shared(4242); "
                 "PERFORM pg_advisory_unlock_shared(4242); RETURN NEW; END $$")
    gate.execute("CREATE TRIGGER gate BEFORE INSERT ON instances "
                 "FOR EACH ROW EXECUTE FUNCTION gate()")
    gate.execute("SELECT pg_advisory_lock(4242)")
    datasets = [ct_instance(study_uid=STUDY, series_uid=f"{STUDY}.{n}", patient_id="C1",
                            size=8, seed=n) for n in (1, 2)]
    outcomes: list[StoreOutcomeValues] = []
    errors: list[BaseException] = []

    def send(data: bytes) -> None:
        try:
            outcomes.append(ingest.store(data, source="TEST").outcome)
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(to_bytes(ds),)) for ds in datasets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while _waiting_for_locks(postgres_url) < 2:  # one at the gate, one on the study row
        assert time.monotonic() < deadline, "the two ingests never waited on each other"
        time.sleep(0.02)
    gate.execute("SELECT pg_advisory_unlock(4242)")
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert outcomes == [StoreOutcomeValues.STORED, StoreOutcomeValues.STORED]
    assert any("collided" in r.getMessage() for r in caplog.records)
    conn = connect(postgres_url)
    assert conn.execute("SELECT count(*) FROM studies").fetchone()[0] == 1
    sops = [str(ds.SOPInstanceUID) for ds in datasets]
    assert queue.states_of(conn, sops) == dict.fromkeys(sops, queue.WorkStateValues.PENDING)
    ingest.close()
