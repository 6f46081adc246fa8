"""IndexSet: vectors in the catalog, per-level HNSW indexes, persistence and model identity
(on SQLite and PostgreSQL; what rests on SQLite's generation runs there only, its
PostgreSQL counterpart, the change log, is in test_follow.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from database import connect, transaction
from indexer import LevelValues, queue
from indexer.errors import ModelMismatch
from indexer.index import (
    DTypeValues,
    IndexSet,
    InstanceVector,
    delete_instances,
    model_identity,
    vector_counts,
)

DIM = 16
MODEL = "local-dir:test@000000000001"


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _iv(uid: str, series: str, study: str, vec: np.ndarray, **kw: str) -> InstanceVector:
    return InstanceVector(uid, series, study, _unit(vec), **kw)  # type: ignore[arg-type]


Paths = tuple[str | Path, Path]


@pytest.fixture
def paths(target: str | Path, tmp_path: Path) -> Paths:
    """The catalog (each back end) and the index folder."""
    return target, tmp_path / "index"


@pytest.fixture
def sqlite_paths(tmp_path: Path) -> Paths:
    """A SQLite catalog (its generation) and the index folder."""
    return tmp_path / "catalog.sqlite", tmp_path / "index"


def _open(paths: Paths, **kw: object) -> IndexSet:
    return IndexSet.open(catalog=paths[0], index_dir=paths[1], **kw)  # type: ignore[arg-type]


def test_series_and_study_vectors_are_renormalised_means(paths: Paths) -> None:
    ix = _open(paths, model_id=MODEL, dim=DIM)
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=DIM) for _ in range(3))
    ix.add_instances([_iv("1.1.1", "1.1", "1", a), _iv("1.1.2", "1.1", "1", b)], identity=MODEL)
    ix.add_instances([_iv("1.2.1", "1.2", "1", c)], identity=MODEL)
    s11 = _unit(_unit(a) + _unit(b))
    np.testing.assert_allclose(ix.get_vector("series", "1.1"), s11, atol=1e-6)
    np.testing.assert_allclose(ix.get_vector("study", "1"), _unit(s11 + _unit(c)), atol=1e-6)
    assert (ix.count("instance"), ix.count("series"), ix.count("study")) == (3, 2, 1)


def test_an_instance_indexed_twice_is_there_once(paths: Paths) -> None:
    ix = _open(paths, model_id=MODEL, dim=DIM)
    v = np.ones(DIM)
    ix.add_instances([_iv("1.1.1", "1.1", "1", v)], identity=MODEL)
    ix.add_instances([_iv("1.1.1", "1.1", "1", -v)], identity=MODEL)
    rows = ix.connection().execute("SELECT count(*) FROM vectors WHERE level='instance'")
    assert rows.fetchone()[0] == 1 and ix.count("instance") == 1
    _keys, dist = ix.ann(LevelValues.INSTANCE, _unit(-v), 1)
    assert dist[0] < 1e-3  # the newer vector replaced the old one in the index too


def test_saved_indexes_reload_and_stale_ones_rebuild(sqlite_paths: Paths) -> None:
    ix = _open(sqlite_paths, model_id=MODEL, dim=DIM)
    rng = np.random.default_rng(1)
    ix.add_instances(
        [_iv(f"1.1.{i}", "1.1", "1", rng.normal(size=DIM)) for i in range(20)], identity=MODEL
    )
    ix.save()
    again = IndexSet(catalog=sqlite_paths[0], index_dir=sqlite_paths[1])
    assert again.load_or_rebuild() == []  # loaded from files
    assert again.count("instance") == 20
    # a change after the save (the process was killed before saving): the files are stale
    again.add_instances([_iv("1.1.99", "1.1", "1", rng.normal(size=DIM))], identity=MODEL)
    third = IndexSet(catalog=sqlite_paths[0], index_dir=sqlite_paths[1])
    assert set(third.load_or_rebuild()) == set(LevelValues)
    assert third.count("instance") == 21
    # a missing file is rebuilt too
    (sqlite_paths[1] / "series.usearch").unlink()
    fourth = IndexSet(catalog=sqlite_paths[0], index_dir=sqlite_paths[1])
    assert fourth.load_or_rebuild() == [LevelValues.SERIES]
    assert fourth.count("series") == 1


def test_a_garbled_index_file_is_rebuilt(paths: Paths) -> None:
    ix = _open(paths, model_id=MODEL, dim=DIM)
    ix.add_instances([_iv("1.1.1", "1.1", "1", np.ones(DIM))], identity=MODEL)
    ix.save()
    (paths[1] / "instance.usearch").write_bytes(b"not an index")
    again = IndexSet(catalog=paths[0], index_dir=paths[1])
    assert LevelValues.INSTANCE in again.load_or_rebuild()
    assert again.count("instance") == 1


def test_vectors_of_another_model_are_refused(paths: Paths) -> None:
    ix = _open(paths, model_id=MODEL, dim=DIM)
    ix.add_instances([_iv("1.1.1", "1.1", "1", np.ones(DIM))], identity=MODEL)
    with pytest.raises(ModelMismatch, match="explicit rebuild") as info:
        ix.add_instances([_iv("1.1.2", "1.1", "1", np.ones(DIM))], identity="other@123")
    assert MODEL in str(info.value) and "other@123" in str(info.value)
    with pytest.raises(ModelMismatch):
        _open(paths, model_id="other@123", dim=DIM)
    with pytest.raises(ModelMismatch):
        _open(paths, model_id=MODEL, dim=DIM + 1)


def test_switching_model_drops_vectors_and_requeues(paths: Paths) -> None:
    ix = _open(paths, model_id=MODEL, dim=DIM)
    conn = connect(paths[0])
    with transaction(conn):
        queue.enqueue(conn, "1.1.1", "dicom/a.dcm")
    [item] = queue.claim(conn, 1)
    ix.add_instances([_iv("1.1.1", "1.1", "1", np.ones(DIM))], identity=MODEL)
    queue.mark_done(conn, [item.sop_instance_uid])
    assert ix.switch_model("new@abc", 8) == 1
    assert ix.identity == "new@abc" and ix.dim == 8
    assert ix.count("instance") == 0 and queue.counts(conn).pending == 1
    ix.add_instances([_iv("1.1.1", "1.1", "1", np.ones(8))], identity="new@abc")
    assert ix.count("study") == 1


def test_deleting_an_instance_updates_its_parents(paths: Paths) -> None:
    ix = _open(paths, model_id=MODEL, dim=DIM)
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=DIM), rng.normal(size=DIM)
    ix.add_instances([_iv("1.1.1", "1.1", "1", a), _iv("1.2.1", "1.2", "1", b)], identity=MODEL)
    assert ix.delete_instance("1.1.1")
    assert ix.get_vector("series", "1.1") is None
    np.testing.assert_allclose(ix.get_vector("study", "1"), _unit(b), atol=1e-6)
    assert (ix.count("instance"), ix.count("series"), ix.count("study")) == (1, 1, 1)
    assert ix.delete_instance("1.2.1")
    assert ix.get_vector("study", "1") is None
    assert (ix.count("instance"), ix.count("series"), ix.count("study")) == (0, 0, 0)
    assert not ix.delete_instance("1.2.1")


def test_constructor_validates(paths: Paths) -> None:
    with pytest.raises(ValueError, match="dtype"):
        IndexSet(catalog=paths[0], index_dir=paths[1], dtype="f8")
    with pytest.raises(ValueError, match="connectivity"):
        IndexSet(catalog=paths[0], index_dir=paths[1], connectivity=0)


def test_dtype_is_a_member_or_its_name(paths: Paths) -> None:
    assert IndexSet(catalog=paths[0], index_dir=paths[1], dtype="f32").dtype is DTypeValues.F32
    ix = IndexSet(catalog=paths[0], index_dir=paths[1], dtype=DTypeValues.I8)
    assert ix.dtype is DTypeValues.I8
    with pytest.raises(ValueError, match=r"dtype must be one of f16, f32, bf16, i8, got 'f8'"):
        IndexSet(catalog=paths[0], index_dir=paths[1], dtype="f8")


def test_status_reads_the_model_and_the_counts(paths: Paths) -> None:
    ix = _open(paths)
    conn = connect(paths[0])
    assert model_identity(conn) is None
    assert vector_counts(conn) == {lv: 0 for lv in LevelValues}
    ix.add_instances([_iv("1.1.1", "1.1", "1", np.ones(DIM)), _iv("1.2.1", "1.2", "1", -np.ones(DIM))],
                     identity=MODEL)
    assert model_identity(conn) == MODEL
    assert vector_counts(conn) == {LevelValues.STUDY: 1, LevelValues.SERIES: 2,
                                   LevelValues.INSTANCE: 2}


def test_deleting_vectors_in_the_callers_transaction(sqlite_paths: Paths) -> None:
    """The node deletes vectors with its catalog rows: all kept or all undone."""
    ix = _open(sqlite_paths, model_id=MODEL, dim=DIM)
    rng = np.random.default_rng(4)
    ix.add_instances([_iv("1.1.1", "1.1", "1", rng.normal(size=DIM)),
                      _iv("1.1.2", "1.1", "1", rng.normal(size=DIM)),
                      _iv("2.1.1", "2.1", "2", rng.normal(size=DIM))], identity=MODEL)
    conn = connect(sqlite_paths[0])
    generation = ix.generation()
    with pytest.raises(RuntimeError, match="the catalog part failed"), transaction(conn):
        delete_instances(conn, ["1.1.1", "1.1.2"])
        raise RuntimeError("the catalog part failed")
    assert ix.get_vector("study", "1") is not None and ix.generation() == generation
    with transaction(conn):
        changes = delete_instances(conn, ["1.1.1", "1.1.2", "not-indexed"])
        assert conn.in_transaction  # it did not commit
    assert ix.get_vector("study", "1") is None and ix.get_vector("series", "1.1") is None
    assert ix.generation() == generation + 1  # one change, one generation
    assert ix.count("instance") == 3  # the in-memory index waits for apply
    ix.apply(changes)
    assert (ix.count("instance"), ix.count("series"), ix.count("study")) == (1, 1, 1)
    with transaction(conn):
        nothing = delete_instances(conn, ["not-indexed"])
    assert nothing.empty and ix.generation() == generation + 1


def test_a_crash_between_commit_and_apply_rebuilds_from_the_table(sqlite_paths: Paths) -> None:
    ix = _open(sqlite_paths, model_id=MODEL, dim=DIM)
    ix.add_instances([_iv("1.1.1", "1.1", "1", np.ones(DIM)),
                      _iv("2.1.1", "2.1", "2", -np.ones(DIM))], identity=MODEL)
    ix.save()
    conn = connect(sqlite_paths[0])
    with transaction(conn):
        delete_instances(conn, ["1.1.1"])
    # the process dies here: the in-memory index and the files were never updated
    again = IndexSet(catalog=sqlite_paths[0], index_dir=sqlite_paths[1])
    assert set(again.load_or_rebuild()) == set(LevelValues)  # the files are stale
    assert (again.count("instance"), again.count("study")) == (1, 1)
    keys, _ = again.ann(LevelValues.STUDY, _unit(np.ones(DIM)), 5)
    assert [r.uid for r in again.rows([int(k) for k in keys]).values()] == ["2"]


def test_the_worker_does_not_bring_back_an_instance_deleted_while_embedding(
        paths: Paths) -> None:
    ix = _open(paths, model_id=MODEL, dim=DIM)
    conn = connect(paths[0])
    with transaction(conn):
        queue.enqueue(conn, "1.1.1", "dicom/a.dcm")
        queue.enqueue(conn, "1.1.2", "dicom/b.dcm")
    queue.claim(conn, 2)
    with transaction(conn):  # deleted by an admin while the worker embeds it
        queue.delete(conn, "1.1.2")
    keys = ix.add_instances([_iv("1.1.1", "1.1", "1", np.ones(DIM)),
                             _iv("1.1.2", "1.1", "1", -np.ones(DIM))],
                            identity=MODEL, only_claimed=True)
    assert len(keys) == 1 and ix.get_vector("instance", "1.1.2") is None
    assert ix.count("instance") == 1
    np.testing.assert_allclose(ix.get_vector("series", "1.1"), _unit(np.ones(DIM)), atol=1e-6)


def test_instance_and_series_levels_can_be_kept_quantized(paths: Paths) -> None:
    i8 = {"instance": "i8", LevelValues.SERIES: DTypeValues.I8}
    ix = _open(paths, model_id=MODEL, dim=DIM, level_dtypes=i8)
    assert [ix.level_dtype(lv) for lv in ("instance", "series", "study")] == [
        DTypeValues.I8, DTypeValues.I8, DTypeValues.F16]
    rng = np.random.default_rng(5)
    vecs = [rng.normal(size=DIM) for _ in range(30)]
    ix.add_instances([_iv(f"1.{i}.1", f"1.{i}", f"{i}", v) for i, v in enumerate(vecs)],
                     identity=MODEL)
    for level in ("instance", "series", "study"):  # each finds its own nearest
        keys, _ = ix.ann(LevelValues(level), _unit(vecs[7]), 1)
        assert ix.rows([int(keys[0])])[int(keys[0])].uid.startswith(("1.7", "7"))
    ix.save()
    sidecar = json.loads((paths[1] / "series.json").read_text())
    assert sidecar["dtype"] == "i8"
    # opened with f16 everywhere: the quantized levels are stale and rebuilt, not the study's
    again = IndexSet(catalog=paths[0], index_dir=paths[1])
    assert sorted(again.load_or_rebuild()) == [LevelValues.INSTANCE, LevelValues.SERIES]
    with pytest.raises(ValueError, match="level_dtypes key"):
        IndexSet(catalog=paths[0], index_dir=paths[1], level_dtypes={"patient": "i8"})
    with pytest.raises(ValueError, match="level_dtypes"):
        IndexSet(catalog=paths[0], index_dir=paths[1], level_dtypes={"series": "i4"})
