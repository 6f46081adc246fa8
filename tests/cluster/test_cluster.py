"""Two ``precedent serve`` and two ``precedent worker`` processes on one PostgreSQL
catalog, sharing one storage root, with the tiny random model: storescu sends different
studies to each node; every instance is indexed exactly once (a worker SIGKILLed with a
batch in hand loses nothing: its claims go back and the other worker finishes them); both
nodes give the same similar-case answer; each stable study gets one automatic KOS, and
the PACS (dcmtk storescp) receives each once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import database
from node.cluster import alive_process_ids
from node.key_objects.document import KOS_SOURCE
from node.storage import aes, connect
from tests._peers import StoreSCP
from tests._synthetic import make_studies, write_files
from tests.node._cli import Serve, clean_env, cli, start_serve

pytestmark = pytest.mark.slow

N_STUDIES, PER_STUDY = 4, 10  # per node


def _env(home: Path, url: str, **extra: str) -> dict[str, str]:
    return {"PRECEDENT_CATALOG__URL": url, "PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0",
            "PRECEDENT_NODE__STABLE_AFTER_S": "1", "PRECEDENT_INDEXER__SLICES_PER_SERIES": "0",
            "PRECEDENT_WORKER__BATCH_SIZE": "4", "PRECEDENT_WORKER__POLL_INTERVAL_S": "0.05",
            "PRECEDENT_KOS__AUTO_SEND": "true", "PRECEDENT_KOS__DESTINATION": "PACS",
            "PRECEDENT_KOS__LIMIT": "3", **extra}


def _until(what: str, check: Callable[[], object], timeout: float = 90.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"not within {timeout} s: {what}")


def _one(conn: database.Connection, sql: str, params: tuple[object, ...] = ()) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path, tiny_model_dir: Path,
            make_storescp: Callable[..., StoreSCP]) -> Iterator[dict[str, object]]:
    pacs = make_storescp(aet="PACS")
    conn = connect(postgres_url)
    aes.add_destination(conn, "PACS", host="127.0.0.1", port=pacs.port)
    root, model = tmp_path / "root", f"local-dir:{tiny_model_dir}"
    env = _env(tmp_path, postgres_url)
    serves: list[Serve] = []
    workers: list[subprocess.Popen[str]] = []
    try:
        for ae in ("NODEA", "NODEB"):  # one after the other: the first makes the token
            serve = start_serve("--data-dir", str(root), "--model", model, "--ae-title", ae,
                                "--allow-any-source", home=tmp_path,
                                PRECEDENT_WORKER__ENABLED="false", **env)
            serves.append(serve)
            serve.wait("ready")
        for i in range(2):
            log = open(tmp_path / f"worker{i}.log", "w", encoding="utf-8")  # noqa: SIM115
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "node", "worker", "--data-dir", str(root),
                 "--model", model], stdout=log, stderr=subprocess.STDOUT, text=True,
                cwd=tmp_path, env=clean_env(tmp_path, **env)))
        _until("four processes registered, the workers with their model", lambda: _one(
            conn, "SELECT count(*) FROM processes") == 4 and _one(
            conn, "SELECT count(*) FROM processes WHERE kind = 'worker'"
                  " AND model_id IS NOT NULL") == 2, timeout=180)
        yield {"conn": conn, "serves": serves, "workers": workers, "pacs": pacs,
               "tmp": tmp_path, "root": root, "url": postgres_url}
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        for s in serves:
            s.stop()
        conn.close()


def _similar(serve: Serve, study: str) -> list[tuple[str, float]]:
    """The similar studies a node answers (Study Instance UID, score), best first."""
    url = f"{serve.url}/dicom-web/studies/{study}/similar?limit=5"
    with urllib.request.urlopen(url, timeout=30) as r:
        return [(c["0020000D"]["Value"][0], round(float(c["00111001"]["Value"][0]), 4))
                for c in json.load(r)]


def test_two_nodes_and_two_workers_share_one_catalog(cluster: dict[str, object]) -> None:
    conn: database.Connection = cluster["conn"]  # type: ignore[assignment]
    serves: list[Serve] = cluster["serves"]  # type: ignore[assignment]
    workers: list[subprocess.Popen[str]] = cluster["workers"]  # type: ignore[assignment]
    pacs: StoreSCP = cluster["pacs"]  # type: ignore[assignment]
    tmp: Path = cluster["tmp"]  # type: ignore[assignment]
    doomed = workers[0]
    doomed_id = str(conn.execute("SELECT id FROM processes WHERE kind = 'worker' AND pid = ?",
                                 (doomed.pid,)).fetchone()[0])

    studies = list(make_studies(2 * N_STUDIES, instances_per_study=PER_STUDY, size=48, seed=5))
    halves = [studies[:N_STUDIES], studies[N_STUDIES:]]
    senders = []
    for serve, half, ae in zip(serves, halves, ("NODEA", "NODEB"), strict=True):
        files = write_files([ds for s in half for ds in s.datasets], tmp / f"send-{ae}")
        senders.append(subprocess.Popen(
            ["storescu", "-aec", ae, "-aet", "STORESCU", "127.0.0.1", str(serve.dimse_port),
             *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))

    # the first worker dies with a batch in hand
    claimed = _until("the first worker holds a claim", lambda: [str(r[0]) for r in conn.execute(
        "SELECT sop_instance_uid FROM work WHERE state = 'in_progress' AND claimed_by = ?",
        (doomed_id,)).fetchall()], timeout=120)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    for sender in senders:
        out, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, out
    total = 2 * N_STUDIES * PER_STUDY

    # every instance indexed, exactly once, the dead worker's claims finished by the other
    def drained() -> bool:
        states = dict(conn.execute("SELECT state, count(*) FROM work GROUP BY state").fetchall())
        return states.get("done", 0) >= total and not states.get("pending") \
            and not states.get("in_progress")

    _until("the queue drained", drained, timeout=120)
    images = [str(r[0]) for r in conn.execute(
        "SELECT i.sop_instance_uid FROM instances i JOIN work w USING (sop_instance_uid)"
        " WHERE w.state = 'done'").fetchall()]
    assert len(images) == total
    assert _one(conn, "SELECT count(*) FROM vectors WHERE level = 'instance'") == total
    assert _one(conn, "SELECT count(DISTINCT uid) FROM vectors WHERE level = 'instance'") == total
    assert _one(conn, "SELECT count(*) FROM work") == _one(
        conn, "SELECT count(DISTINCT sop_instance_uid) FROM work")
    returned = dict(conn.execute(
        "SELECT sop_instance_uid, attempts FROM work WHERE sop_instance_uid = ANY(?)",
        (claimed,)).fetchall())
    assert set(returned.values()) == {2}, "claimed by the dead worker, then once more"
    others = {str(r[0]) for r in conn.execute("SELECT id FROM processes")} - {doomed_id}
    assert alive_process_ids(conn) == others and len(others) == 3
    status = cli("status", "--json", "--data-dir", str(cluster["root"]), home=tmp,
                 PRECEDENT_CATALOG__URL=str(cluster["url"]))
    assert status.returncode == 0, status.stderr
    listed = {(p["kind"], p["pid"], p["alive"]) for p in json.loads(status.stdout)["processes"]}
    assert listed == {("serve", s.process.pid, True) for s in serves} | {
        ("worker", doomed.pid, False), ("worker", workers[1].pid, True)}

    # each stable study: one automatic KOS on the catalog, received once by the PACS
    def kos_done() -> bool:
        return _one(conn, "SELECT count(*) FROM instances WHERE source = ?",
                    (KOS_SOURCE,)) >= 2 * N_STUDIES

    _until("an automatic KOS per study", kos_done, timeout=120)
    time.sleep(3)  # storing the KOS makes each study stable again: never answered twice
    per_study = conn.execute("SELECT study_instance_uid, count(*) FROM instances"
                             " WHERE source = ? GROUP BY study_instance_uid",
                             (KOS_SOURCE,)).fetchall()
    assert len(per_study) == 2 * N_STUDIES and {int(r[1]) for r in per_study} == {1}
    _until("the PACS received every KOS", lambda: len(pacs.received()) >= 2 * N_STUDIES)
    assert len(pacs.received()) == 2 * N_STUDIES
    assert _one(conn, "SELECT count(*) FROM duties WHERE kind = 'kos' AND state != 'done'") == 0

    # both nodes' indexes follow the catalog: the same question, the same answer
    query = studies[0].study_instance_uid

    answers: list[tuple[list[tuple[str, float]], list[tuple[str, float]]]] = []

    def alike() -> bool:
        answers.append((_similar(serves[0], query), _similar(serves[1], query)))
        a, b = answers[-1]
        return len(a) == 5 and a == b

    try:
        _until("both nodes answer alike", alike, timeout=30)
    except TimeoutError:
        raise AssertionError(f"the nodes answer differently: {answers[-1]}") from None

    # SIGTERM stops a worker within seconds; it leaves the registry (dead at once)
    survivor = workers[1]
    survivor_id = str(conn.execute("SELECT id FROM processes WHERE pid = ?",
                                   (survivor.pid,)).fetchone()[0])
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=15) == 0
    assert survivor_id not in alive_process_ids(conn)
    assert _one(conn, "SELECT count(*) FROM work WHERE claimed_by = ?", (survivor_id,)) == 0
