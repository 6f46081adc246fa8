"""The work queue on a real catalog (two connections), SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from database import Connection, IntegrityError, connect, dialect_of, transaction
from indexer import ensure_schema, queue
from indexer.errors import QueueError
from indexer.queue import WorkStateValues

Target = str | Path


@pytest.fixture
def db(target: Target) -> Target:
    conn = connect(target)
    ensure_schema(conn)
    ensure_schema(conn)  # idempotent
    conn.close()
    return target


def _begin(conn: Connection) -> None:
    conn.execute(dialect_of(conn).begin())


def _enqueue(conn: Connection, *uids: str) -> None:
    with transaction(conn):
        for uid in uids:
            queue.enqueue(conn, uid, f"dicom/{uid}.dcm")


def test_enqueue_joins_the_callers_transaction(db: Target) -> None:
    conn = connect(db)
    _begin(conn)
    queue.enqueue(conn, "1.2.3", "dicom/1.2.3.dcm")
    conn.rollback()  # the ingest failed: nothing queued
    assert queue.counts(conn).total == 0
    _begin(conn)
    queue.enqueue(conn, "1.2.3", "dicom/1.2.3.dcm")
    assert conn.in_transaction  # enqueue did not commit
    conn.commit()
    assert queue.counts(conn).pending == 1


def test_enqueue_twice_keeps_one_row_and_replace_requeues(db: Target) -> None:
    conn = connect(db)
    _enqueue(conn, "1.1", "1.1")
    assert queue.counts(conn).total == 1
    [item] = queue.claim(conn, 5)
    queue.mark_done(conn, [item.sop_instance_uid])
    _enqueue(conn, "1.1")  # received again, not replaced: stays done
    assert queue.counts(conn).done == 1
    _begin(conn)
    queue.enqueue(conn, "1.1", "dicom/new.dcm", replace=True)
    conn.commit()
    [item] = queue.claim(conn, 5)
    assert item.path == "dicom/new.dcm" and item.attempts == 1


def test_enqueue_validates_its_arguments(db: Target) -> None:
    conn = connect(db)
    with pytest.raises(ValueError, match="sop_instance_uid"):
        queue.enqueue(conn, "", "p")
    with pytest.raises(ValueError, match="path"):
        queue.enqueue(conn, "1.2", "")


def test_claim_is_atomic_across_connections(db: Target) -> None:
    a, b = connect(db), connect(db)
    _enqueue(a, *[f"1.{i}" for i in range(10)])
    first = queue.claim(a, 4)
    second = queue.claim(b, 4)
    third = queue.claim(a, 4)
    uids = [i.sop_instance_uid for i in first + second + third]
    assert len(uids) == len(set(uids)) == 10
    assert [i.sop_instance_uid for i in first] == ["1.0", "1.1", "1.2", "1.3"]  # oldest first
    assert queue.counts(a).in_progress == 10
    assert queue.claim(b, 4) == []


def test_claim_refuses_to_run_inside_a_transaction(db: Target) -> None:
    conn = connect(db)
    _begin(conn)
    with pytest.raises(QueueError, match="claim opens its own transaction"):
        queue.claim(conn, 1)
    with pytest.raises(ValueError, match="n must be at least 1"):
        conn.rollback() or queue.claim(conn, 0)


def test_retry_later_respects_not_before(db: Target) -> None:
    conn = connect(db)
    _enqueue(conn, "2.1")
    [item] = queue.claim(conn, 1, now=1000.0)
    queue.retry_later(conn, item.sop_instance_uid, "disk busy", backoff_s=30, now=1000.0)
    assert queue.claim(conn, 1, now=1029.0) == []
    [again] = queue.claim(conn, 1, now=1031.0)
    assert again.attempts == 2


def test_skip_fail_and_counts_with_reasons(db: Target) -> None:
    conn = connect(db)
    _enqueue(conn, "3.1", "3.2", "3.3", "3.4")
    items = queue.claim(conn, 4)
    queue.mark_done(conn, [items[0].sop_instance_uid])
    queue.mark_skipped(conn, items[1].sop_instance_uid, "no_pixel_data: Basic Text SR")
    queue.mark_failed(conn, items[2].sop_instance_uid, "undecodable: truncated")
    queue.mark_failed(conn, items[3].sop_instance_uid, "undecodable: truncated")
    c = queue.counts(conn)
    assert c.by_state == {"pending": 0, "in_progress": 0, "done": 1, "skipped": 1, "failed": 2,
                          "not_sampled": 0}
    assert c.failed_reasons == {"undecodable: truncated": 2}
    assert c.skipped_reasons == {"no_pixel_data: Basic Text SR": 1}
    assert c.to_dict()["by_state"]["failed"] == 2


def test_reset_in_progress_after_a_crash(db: Target) -> None:
    conn = connect(db)
    _enqueue(conn, "4.2")
    for _ in range(3):  # 4.2 kills the worker every time it is touched
        queue.reset_in_progress(conn, max_attempts=3)
        [_poison] = queue.claim(conn, 1)
    _enqueue(conn, "4.1")
    queue.claim(conn, 1)  # 4.1 claimed once, then the worker is killed again
    back = queue.reset_in_progress(conn, max_attempts=3)
    c = queue.counts(conn)
    assert back == 1 and c.pending == 1 and c.failed == 1
    [reason] = c.failed_reasons
    assert "interrupted 3 times" in reason


def test_release_does_not_count_the_claim(db: Target) -> None:
    conn = connect(db)
    _enqueue(conn, "5.1")
    [item] = queue.claim(conn, 1)
    queue.release(conn, [item.sop_instance_uid])
    [again] = queue.claim(conn, 1)
    assert again.attempts == 1


def test_delete_and_requeue_all(db: Target) -> None:
    conn = connect(db)
    _enqueue(conn, "6.1", "6.2", "6.3")
    items = queue.claim(conn, 3)
    queue.mark_done(conn, [items[0].sop_instance_uid])
    queue.mark_skipped(conn, items[1].sop_instance_uid, "no_pixel_data")
    queue.delete(conn, items[2].sop_instance_uid)
    conn.commit()
    assert queue.requeue_all(conn) == 1  # skipped objects stay skipped
    assert queue.counts(conn).by_state[WorkStateValues.PENDING.value] == 1
    assert queue.counts(conn).total == 2


def test_counts_and_states_of_some_instances(db: Target) -> None:
    """What the node asks about one study: the states of its instances, by UID."""
    conn = connect(db)
    study = [f"7.{i}" for i in range(1000)]  # more UIDs than one statement may bind
    _enqueue(conn, *study, "8.1", "8.2")
    claimed = queue.claim(conn, 3)  # 7.0, 7.1, 7.2
    queue.mark_done(conn, [claimed[0].sop_instance_uid])
    queue.mark_failed(conn, claimed[1].sop_instance_uid, "undecodable: truncated")
    c = queue.counts(conn, study)
    assert c.total == 1000 and c.done == 1 and c.failed == 1 and c.in_progress == 1
    assert c.pending == 997 and c.waiting == 998
    assert c.failed_reasons == {"undecodable: truncated": 1} and c.skipped_reasons == {}
    assert queue.counts(conn, ["8.1", "nowhere"]).by_state == {
        "pending": 1, "in_progress": 0, "done": 0, "skipped": 0, "failed": 0, "not_sampled": 0}
    assert queue.counts(conn, []).total == 0
    assert queue.counts(conn).total == 1002  # the whole queue
    states = queue.states_of(conn, ["7.0", "7.1", "7.2", "7.3", "nowhere"])
    assert states == {"7.0": WorkStateValues.DONE, "7.1": WorkStateValues.FAILED,
                      "7.2": WorkStateValues.IN_PROGRESS, "7.3": WorkStateValues.PENDING}


def test_delete_takes_several_instances_in_the_callers_transaction(db: Target) -> None:
    conn = connect(db)
    _enqueue(conn, "9.1", "9.2", "9.3")
    _begin(conn)
    queue.delete(conn, ["9.1", "9.2"])
    assert conn.in_transaction  # delete did not commit
    conn.rollback()
    assert queue.counts(conn).total == 3
    _begin(conn)
    queue.delete(conn, ["9.1", "9.2"])
    conn.commit()
    assert set(queue.states_of(conn, ["9.1", "9.2", "9.3"])) == {"9.3"}


def test_the_schema_allows_only_the_states_of_the_enum(db: Target) -> None:
    conn = connect(db)
    _enqueue(conn, "10.1")
    with pytest.raises(IntegrityError, match=r"(?i)check"):
        conn.execute("UPDATE work SET state = 'lost' WHERE sop_instance_uid = '10.1'")


def test_an_older_work_table_is_upgraded_with_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    conn = connect(db)
    conn.executescript("""
        CREATE TABLE work (
            sop_instance_uid TEXT PRIMARY KEY, path TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'in_progress', 'done', 'skipped', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0, reason TEXT,
            not_before REAL NOT NULL DEFAULT 0, updated_at REAL NOT NULL);
        INSERT INTO work VALUES ('1.1', 'a.dcm', 'done', 1, NULL, 0, 100.0);
        INSERT INTO work VALUES ('1.2', 'b.dcm', 'pending', 0, NULL, 0, 200.0);
    """)
    ensure_schema(conn)
    ensure_schema(conn)  # idempotent
    assert queue.states_of(conn, ["1.1", "1.2"]) == {
        "1.1": WorkStateValues.DONE, "1.2": WorkStateValues.PENDING}
    [item] = queue.claim(conn, 5)
    assert (item.sop_instance_uid, item.enqueued_at) == ("1.2", 200.0)  # its last update
    with transaction(conn):
        queue.mark(conn, ["1.2"], WorkStateValues.NOT_SAMPLED, "not sampled: test")
    assert queue.counts(conn).not_sampled_reasons == {"not sampled: test": 1}
