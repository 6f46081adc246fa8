"""Once across the cluster, without processes: the process registry (alive = its
advisory lock held), the maintenance leader handing back the claims of the dead, the
study-stable event marked by exactly one of several concurrent scanners, and duties
claimed by exactly one claimer — on both back ends where the code is shared."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import database
from indexer import queue
from node.cluster import Registration, alive_process_ids, dead_process_ids, list_processes
from node.cluster.leader import MaintenanceLeader, maintain
from node.cluster.registry import reap_dead
from node.storage import connect, duties
from node.storage.stability import mark_stable_studies

STUDIES = [f"1.2.826.0.1.3680043.10.9.{i}" for i in range(20)]


def _queues(url: str) -> database.Connection:
    """The work queue's and the duties' tables only (what the leader looks after)."""
    import indexer

    conn = database.connect(url)
    indexer.ensure_schema(conn)
    duties.ensure_schema(conn)
    return conn


def _studies(conn: database.Connection, updated_at: float) -> None:
    with database.transaction(conn):
        conn.executemany(
            "INSERT INTO studies (study_instance_uid, received_at, updated_at) VALUES (?, ?, ?)",
            [(uid, updated_at, updated_at) for uid in STUDIES])


def test_the_stable_event_is_marked_once_among_concurrent_scanners(
        target: str | Path) -> None:
    conn = connect(target)
    _studies(conn, time.time() - 60)
    conn.close()
    marked: list[list[str]] = []
    barrier = threading.Barrier(4)

    def scan() -> None:
        c = connect(target, create_schema=False)
        try:
            barrier.wait()
            marked.append(mark_stable_studies(c, 1.0, time.time(),
                                              follow_ups=[duties.DutyKindValues.KOS]))
        finally:
            c.close()

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [uid for uids in marked for uid in uids]
    assert len(marked) == 4
    assert sorted(everything) == sorted(STUDIES), "each study marked by exactly one scanner"
    conn = connect(target, create_schema=False)
    try:
        assert duties.counts(conn, duties.DutyKindValues.KOS)["pending"] == len(STUDIES)
        # quiet again: nothing more to mark
        assert mark_stable_studies(conn, 1.0, time.time()) == []
    finally:
        conn.close()


def test_duties_are_claimed_once_and_finished_only_by_their_claimer(
        target: str | Path) -> None:
    conn = connect(target)
    with database.transaction(conn):
        duties.enqueue(conn, duties.DutyKindValues.KOS, STUDIES, now=100.0)
    claimed: dict[str, list[duties.Duty]] = {"a": [], "b": []}

    def claim_all(name: str) -> None:
        c = connect(target, create_schema=False)
        try:
            while got := duties.claim(c, duties.DutyKindValues.KOS, 3, claimer=name):
                claimed[name] += got
        finally:
            c.close()

    threads = [threading.Thread(target=claim_all, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    subjects = [d.subject for got in claimed.values() for d in got]
    assert sorted(subjects) == sorted(STUDIES), "every duty claimed by exactly one claimer"
    first = (claimed["a"] or claimed["b"])[0]
    owner = "a" if claimed["a"] else "b"
    other = "b" if owner == "a" else "a"
    assert not duties.finish(conn, first, claimer=other)
    assert duties.finish(conn, first, claimer=owner)
    # a dead claimer's duties go back, and are claimed again; a new event re-opens one
    with database.transaction(conn):
        back = duties.return_claims(conn, [other])
    assert back == len(claimed[other])
    with database.transaction(conn):
        duties.enqueue(conn, duties.DutyKindValues.KOS, [first.subject], now=200.0)
    again = duties.claim(conn, duties.DutyKindValues.KOS, 100, claimer="c")
    assert {d.subject for d in again} == {d.subject for d in claimed[other]} | {first.subject}
    assert {d.enqueued_at for d in again if d.subject == first.subject} == {200.0}
    conn.close()


def test_a_process_is_alive_while_its_lock_is_held(postgres_url: str, tmp_path: Path) -> None:
    conn = _queues(postgres_url)
    serve = Registration(postgres_url, kind="serve", data_dir=str(tmp_path),
                         ae_title="NODE1", http_url="http://127.0.0.1:1",
                         model_id=lambda: "tiny").register()
    worker = Registration(postgres_url, kind="worker", data_dir=str(tmp_path)).register()
    try:
        assert alive_process_ids(conn) == {serve.id, worker.id}
        rows = {p.id: p for p in list_processes(conn)}
        assert rows[serve.id].kind == "serve" and rows[serve.id].ae_title == "NODE1"
        assert rows[worker.id].kind == "worker" and rows[worker.id].alive
        # the worker's session ends (as a SIGKILL would end it): dead at once
        worker.close()
        assert alive_process_ids(conn) == {serve.id}
        assert dead_process_ids(conn) == {worker.id}
        assert reap_dead(conn, older_than_s=3600) == 0  # dead, but not for a day
        assert reap_dead(conn, older_than_s=0, now=time.time() + 1) == 1
        assert {p.id for p in list_processes(conn)} == {serve.id}
    finally:
        serve.close()
        worker.close()
        conn.close()


def test_the_leader_hands_back_the_claims_of_the_dead(postgres_url: str,
                                                      tmp_path: Path) -> None:
    conn = _queues(postgres_url)
    alive = Registration(postgres_url, kind="worker", data_dir=str(tmp_path)).register()
    dead = Registration(postgres_url, kind="worker", data_dir=str(tmp_path)).register()
    try:
        with database.transaction(conn):
            for i in range(6):
                queue.enqueue(conn, f"1.2.3.{i}", f"f{i}.dcm")
            duties.enqueue(conn, duties.DutyKindValues.KOS, ["1.2.9.1", "1.2.9.2"], now=1.0)
        mine = queue.claim(conn, 3, claimer=alive.id)
        theirs = queue.claim(conn, 3, claimer=dead.id)
        duties.claim(conn, duties.DutyKindValues.KOS, 1, claimer=alive.id)
        duties.claim(conn, duties.DutyKindValues.KOS, 1, claimer=dead.id)
        memory: dict[str, float] = {}
        assert maintain(conn, returned=memory)["work_returned"] == 0  # nobody is dead yet
        dead.close()
        done = maintain(conn, returned=memory)
        assert done == {"work_returned": 3, "duties_returned": 1, "reaped": 0}
        states = queue.states_of(conn, [w.sop_instance_uid for w in mine + theirs])
        assert {states[w.sop_instance_uid] for w in theirs} == {queue.WorkStateValues.PENDING}
        assert {states[w.sop_instance_uid] for w in mine} == {
            queue.WorkStateValues.IN_PROGRESS}
        # claimed again: one more attempt, not two
        again = queue.claim(conn, 10, claimer=alive.id)
        assert sorted(w.sop_instance_uid for w in again) == sorted(
            w.sop_instance_uid for w in theirs)
        assert {w.attempts for w in again} == {2}
        # a dead process whose worker's own connection lived on claims once more: its
        # claims are looked for again, once a minute, not every round
        with database.transaction(conn):
            queue.enqueue(conn, "1.2.3.99", "f99.dcm")
        assert [w.sop_instance_uid for w in queue.claim(conn, 1, claimer=dead.id)] == [
            "1.2.3.99"]
        assert maintain(conn, returned=memory)["work_returned"] == 0
        assert maintain(conn, returned=memory, again_s=0)["work_returned"] == 1
    finally:
        alive.close()
        dead.close()
        conn.close()


def test_one_leader_at_a_time_and_it_moves_when_the_leader_stops(postgres_url: str) -> None:
    _queues(postgres_url).close()
    first, second = MaintenanceLeader(postgres_url, every_s=0.05), MaintenanceLeader(
        postgres_url, every_s=0.05)
    stop_first, stop_second = threading.Event(), threading.Event()
    threads = [threading.Thread(target=first.run, args=(stop_first,)),
               threading.Thread(target=second.run, args=(stop_second,))]
    threads[0].start()
    try:
        assert first.leading.wait(10)
        threads[1].start()
        time.sleep(0.5)
        assert not second.leading.is_set()
        stop_first.set()
        threads[0].join(10)
        assert second.leading.wait(10), "leadership did not move"
    finally:
        stop_first.set()
        stop_second.set()
        for t in threads:
            if t.is_alive() or t.ident is not None:
                t.join(10)


def test_a_separate_worker_refuses_an_embedded_catalog(tmp_path: Path) -> None:
    from node.cluster.worker_process import SEPARATE_WORKER_NEEDS_POSTGRESQL
    from tests.node._cli import cli, one_line_error

    result = cli("worker", "--data-dir", str(tmp_path / "data"), home=tmp_path)
    assert one_line_error(result) == f"precedent: {SEPARATE_WORKER_NEEDS_POSTGRESQL}"


@pytest.mark.parametrize("kind", ["serve", "worker"])
def test_a_process_kind_outside_the_values_is_refused(postgres_url: str, kind: str,
                                                     tmp_path: Path) -> None:
    assert Registration(postgres_url, kind=kind, data_dir=str(tmp_path)).kind.value == kind
    with pytest.raises(ValueError):
        Registration(postgres_url, kind="viewer", data_dir=str(tmp_path))


def test_the_automatic_kos_uids_are_derived_from_its_event() -> None:
    from pydicom.uid import UID

    from node.key_objects import kos_uids

    series, sop = kos_uids(STUDIES[0], "open_clip:tiny", 1700000000.25)
    assert (series, sop) == kos_uids(STUDIES[0], "open_clip:tiny", 1700000000.25)
    assert series != sop and all(UID(u).is_valid for u in (series, sop))
    assert kos_uids(STUDIES[0], "open_clip:tiny", 1700000001.0)[1] != sop  # a new event
    assert kos_uids(STUDIES[1], "open_clip:tiny", 1700000000.25)[1] != sop
    assert kos_uids(STUDIES[0], "open_clip:other", 1700000000.25)[1] != sop


def test_a_node_of_a_shared_folder_is_found_by_its_card(tmp_path: Path) -> None:
    import os

    from node.data_folder import NODES_DIR, DataFolderLock, Owner, OwnerRoleValues, current_owner

    node = Owner(pid=os.getpid(), role=OwnerRoleValues.NODE, command="precedent serve",
                 http_url="http://127.0.0.1:1")
    assert current_owner(tmp_path) is None
    card = DataFolderLock.acquire_card(tmp_path, node)
    try:
        assert current_owner(tmp_path) == node
        # a card nobody holds (left by a killed node) counts for nothing
        (tmp_path / NODES_DIR / "elsewhere-1.lock").write_text("{}")
    finally:
        card.release()
    assert current_owner(tmp_path) is None
    assert [p.name for p in (tmp_path / NODES_DIR).iterdir()] == ["elsewhere-1.lock"]


def test_a_rebuild_is_refused_while_other_processes_use_the_catalog(
        postgres_url: str, tmp_path: Path) -> None:
    """``index rebuild`` switches the model of every process on the catalog: with a worker
    alive it is refused in one line naming it; with the worker gone it goes ahead (and
    then fails only for want of a model, past the refusal)."""
    from node.storage import connect as connect_catalog
    from tests.node._cli import cli, one_line_error

    connect_catalog(postgres_url).close()  # the catalog's tables
    data = tmp_path / "data"
    worker = Registration(postgres_url, kind="worker", data_dir=str(data)).register()
    try:
        refused = cli("index", "rebuild", "--data-dir", str(data), "--model",
                      "local-dir:/nonexistent", home=tmp_path,
                      PRECEDENT_CATALOG__URL=postgres_url)
        error = one_line_error(refused)
        assert "stop the others first" in error
        assert f"worker pid {os.getpid()}" in error
    finally:
        worker.close()
    past = cli("index", "rebuild", "--data-dir", str(data), "--model",
               "local-dir:/nonexistent", home=tmp_path, PRECEDENT_CATALOG__URL=postgres_url)
    assert past.returncode != 0
    assert "stop the others first" not in one_line_error(past)


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["status"], ["index", "status"]])
def test_a_catalog_server_that_is_down_is_one_line(command: list[str], tmp_path: Path) -> None:
    """An admin whose PostgreSQL is down (or whose URL names the wrong port) reads one
    line naming the catalog and what to check, never a traceback."""
    from tests._peers import free_port
    from tests.node._cli import cli, one_line_error

    url = f"postgresql://precedent@127.0.0.1:{free_port()}/precedent"
    ports = ["--dimse-port", str(free_port()), "--http-port", str(free_port())]
    result = cli(*command, "--data-dir", str(tmp_path / "data"),
                 *(ports if command == ["serve"] else []), home=tmp_path,
                 PRECEDENT_CATALOG__URL=url)
    line = one_line_error(result)
    assert line.startswith(f"precedent: cannot open the catalog {url}: ")
    assert "Connection refused" in line
    assert line.endswith("; check [catalog] url and that the server accepts this host and user")
