"""Deleting studies, series and instances on a real catalog: catalog rows, queue entries and
vectors go in one transaction, then the in-memory index and the files. A failure in the
middle changes nothing; a crash after the commit leaves an index that is rebuilt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import database
from indexer import LevelValues, queue
from indexer.index import IndexSet, InstanceVector, vector_counts
from node.errors import UnknownObject
from node.storage import Ingest, connect
from node.storage.deletion import delete_objects
from tests._synthetic import ct_instance, to_bytes
from tests.conftest import BACKENDS, catalog_for

DIM = 8
MODEL = "local-dir:deletion-test@0"
STUDY_A, STUDY_B = "1.2.826.0.1.3680043.10.1", "1.2.826.0.1.3680043.10.2"


@dataclass
class Catalog:
    data_dir: Path
    target: database.Target
    conn: database.Connection
    index_set: IndexSet
    series: dict[str, list[str]]  # series UID -> its SOP Instance UIDs

    def delete(self, **uids: str) -> int:
        return delete_objects(self.conn, self.data_dir, self.index_set, **uids)

    def _changes(self) -> int:
        """How many transactions changed the vectors: the generation (SQLite), the change
        log's transactions (PostgreSQL, whose horizon moves with every transaction, failed
        ones too)."""
        if database.dialect_of(self.conn) is database.DialectValues.SQLITE:
            return self.index_set.generation()
        return int(self.conn.execute(
            "SELECT count(DISTINCT txid) FROM vector_changes").fetchone()[0])

    def state(self) -> dict[str, Any]:
        """Everything a deletion touches, to compare before and after."""
        def uids(sql: str) -> set[str]:
            return {str(r[0]) for r in self.conn.execute(sql)}

        return {
            "studies": uids("SELECT study_instance_uid FROM studies"),
            "series": uids("SELECT series_instance_uid FROM series"),
            "instances": uids("SELECT sop_instance_uid FROM instances"),
            "reports": uids("SELECT study_instance_uid FROM reports"),
            "queue": set(queue.states_of(self.conn, uids("SELECT sop_instance_uid FROM instances")
                                         | {u for us in self.series.values() for u in us})),
            "vectors": vector_counts(self.conn),
            "in_memory": {lv: self.index_set.count(lv) for lv in LevelValues},
            "generation": self._changes(),
            "files": {p.name for p in (self.data_dir / "dicom").rglob("*.dcm")},
        }


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    return catalog_for(request, request.param)


@pytest.fixture
def catalog(tmp_path: Path, catalog_url: str | None) -> Catalog:
    """Study A: two series of two CT instances; study B: one series of two. All stored
    through the ingest path, indexed (random vectors), with a report each."""
    data_dir = tmp_path / "data"
    target: database.Target = catalog_url or data_dir / "catalog.sqlite"
    ingest = Ingest(data_dir=data_dir, catalog=target)
    series: dict[str, list[str]] = {}
    layout = {STUDY_A: [f"{STUDY_A}.1", f"{STUDY_A}.2"], STUDY_B: [f"{STUDY_B}.1"]}
    for n, (study, its_series) in enumerate(layout.items()):
        for series_uid in its_series:
            for i in range(2):
                ds = ct_instance(study_uid=study, series_uid=series_uid, patient_id=f"P{n}",
                                 instance_number=i, size=16, seed=i)
                stored = ingest.store(to_bytes(ds), source="TEST")
                series.setdefault(series_uid, []).append(stored.sop_instance_uid)
    conn = connect(target)
    index_set = IndexSet.open(catalog=target, index_dir=data_dir / "index",
                              model_id=MODEL, dim=DIM)
    items = queue.claim(conn, 100)
    study_of = {s: s.rsplit(".", 1)[0] for s in series}
    parent = {sop: s for s, sops in series.items() for sop in sops}
    rng = np.random.default_rng(0)
    index_set.add_instances(
        [InstanceVector(it.sop_instance_uid, parent[it.sop_instance_uid],
                        study_of[parent[it.sop_instance_uid]], rng.normal(size=DIM)
                        .astype(np.float32)) for it in items],
        identity=MODEL, only_claimed=True)
    queue.mark_done(conn, [it.sop_instance_uid for it in items])
    with database.transaction(conn):
        for study in layout:
            conn.execute("INSERT INTO reports (study_instance_uid, text, source, updated_at)"
                         " VALUES (?, 'no acute findings', 'import', 0)", (study,))
    return Catalog(data_dir, target, conn, index_set, series)


def test_the_catalog_is_set_up(catalog: Catalog) -> None:
    state = catalog.state()
    assert len(state["instances"]) == len(state["queue"]) == len(state["files"]) == 6
    assert state["vectors"] == state["in_memory"] == {
        LevelValues.STUDY: 2, LevelValues.SERIES: 3, LevelValues.INSTANCE: 6}


def test_an_instance_then_a_series_then_the_study(catalog: Catalog) -> None:
    first_series, second_series = f"{STUDY_A}.1", f"{STUDY_A}.2"
    sop = catalog.series[first_series][0]
    before = catalog.state()
    assert catalog.delete(study=STUDY_A, series=first_series, sop=sop) == 1
    after = catalog.state()
    assert after["instances"] == before["instances"] - {sop}
    assert sop not in after["queue"] and len(after["files"]) == 5
    assert after["series"] == before["series"] and after["studies"] == before["studies"]
    assert after["vectors"] == after["in_memory"] == {
        LevelValues.STUDY: 2, LevelValues.SERIES: 3, LevelValues.INSTANCE: 5}
    assert after["generation"] == before["generation"] + 1
    assert catalog.index_set.get_vector("instance", sop) is None

    assert catalog.delete(study=STUDY_A, series=first_series) == 1
    after = catalog.state()
    assert first_series not in after["series"] and STUDY_A in after["studies"]
    assert after["vectors"] == after["in_memory"] == {
        LevelValues.STUDY: 2, LevelValues.SERIES: 2, LevelValues.INSTANCE: 4}
    assert not (catalog.data_dir / "dicom" / STUDY_A / first_series).exists()

    assert catalog.delete(study=STUDY_A) == 2
    after = catalog.state()
    assert after["studies"] == after["reports"] == {STUDY_B}
    assert after["series"] == {f"{STUDY_B}.1"} and second_series not in after["series"]
    assert after["queue"] == set(catalog.series[f"{STUDY_B}.1"]) == after["instances"]
    assert after["vectors"] == after["in_memory"] == {
        LevelValues.STUDY: 1, LevelValues.SERIES: 1, LevelValues.INSTANCE: 2}
    assert not (catalog.data_dir / "dicom" / STUDY_A).exists()


@pytest.mark.parametrize("table", ["instances", "studies"])
def test_a_failure_in_the_middle_leaves_everything_as_it_was(catalog: Catalog, table: str) -> None:
    """The catalog refuses (a real database error, raised by a trigger) after the queue
    entries and the vectors were deleted in the same transaction: all of it is undone."""
    if database.dialect_of(catalog.conn) is database.DialectValues.SQLITE:
        catalog.conn.execute(f"CREATE TRIGGER refuse BEFORE DELETE ON {table} "
                             "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        drop = "DROP TRIGGER refuse"
    else:
        catalog.conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                             "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$")
        catalog.conn.execute(f"CREATE TRIGGER refuse BEFORE DELETE ON {table} "
                             "FOR EACH ROW EXECUTE FUNCTION refuse()")
        drop = f"DROP TRIGGER refuse ON {table}"
    before = catalog.state()
    with pytest.raises(database.DatabaseError, match="injected failure"):
        catalog.delete(study=STUDY_A)
    assert catalog.state() == before
    assert not catalog.conn.in_transaction
    catalog.conn.execute(drop)
    assert catalog.delete(study=STUDY_A) == 4


def test_after_a_crash_past_the_commit_the_index_is_rebuilt(catalog: Catalog) -> None:
    """The deletion committed but the in-memory index was never updated (the process died,
    or no model was loaded): the saved index files are stale and rebuilt at the next open."""
    catalog.index_set.save()
    delete_objects(catalog.conn, catalog.data_dir, None, study=STUDY_A)
    assert catalog.index_set.count(LevelValues.STUDY) == 2  # not told
    reopened = IndexSet.open(catalog=catalog.target,
                             index_dir=catalog.data_dir / "index", model_id=MODEL, dim=DIM)
    assert {lv: reopened.count(lv) for lv in LevelValues} == {
        LevelValues.STUDY: 1, LevelValues.SERIES: 1, LevelValues.INSTANCE: 2}
    keys, _ = reopened.ann(LevelValues.STUDY, np.ones(DIM, np.float32), 10)
    assert [r.uid for r in reopened.rows([int(k) for k in keys]).values()] == [STUDY_B]


def test_an_unknown_object_changes_nothing_and_says_which(catalog: Catalog) -> None:
    before = catalog.state()
    with pytest.raises(UnknownObject, match="no series with these UIDs"):
        catalog.delete(study=STUDY_A, series="1.2.3.4")
    with pytest.raises(UnknownObject, match="no study with these UIDs"):
        catalog.delete(study="1.2.3")
    assert catalog.state() == before and not catalog.conn.in_transaction
