"""Several processes on one PostgreSQL catalog: each IndexSet follows the vectors the
others add and delete through the change log, without a rebuild; after a restart it
replays from its saved horizon; pruning the log past that horizon means a rebuild.

"Another process" is a second IndexSet on the same catalog with its own index folder
(its own connections, its own in-memory indexes), as each serving process has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from database import connect, transaction
from indexer import LevelValues
from indexer.index import IndexSet, InstanceVector, delete_instances, prune_changes

DIM = 16
MODEL = "local-dir:test@000000000001"


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _iv(uid: str, series: str, study: str, vec: np.ndarray) -> InstanceVector:
    return InstanceVector(uid, series, study, _unit(vec))


def _counts(ix: IndexSet) -> tuple[int, int, int]:
    return ix.count("instance"), ix.count("series"), ix.count("study")


def _nearest(ix: IndexSet, level: LevelValues, vec: np.ndarray) -> tuple[str, float]:
    keys, dist = ix.ann(level, _unit(vec), 1)
    return ix.rows([int(keys[0])])[int(keys[0])].uid, float(dist[0])


@pytest.fixture
def pair(postgres_url: str, tmp_path: Path) -> tuple[IndexSet, IndexSet]:
    """Two processes' index sets on one catalog: a writer (its worker) and a follower."""
    writer = IndexSet.open(catalog=postgres_url, index_dir=tmp_path / "a", model_id=MODEL,
                           dim=DIM)
    follower = IndexSet.open(catalog=postgres_url, index_dir=tmp_path / "b", model_id=MODEL,
                             dim=DIM)
    return writer, follower


def test_a_follower_sees_adds_and_deletes_without_a_rebuild(
        pair: tuple[IndexSet, IndexSet]) -> None:
    writer, follower = pair
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=DIM) for _ in range(3))
    writer.add_instances([_iv("1.1.1", "1.1", "1", a), _iv("1.1.2", "1.1", "1", b),
                          _iv("2.1.1", "2.1", "2", c)], identity=MODEL)
    assert _counts(writer) == (3, 2, 2) and _counts(follower) == (0, 0, 0)
    assert follower.follow_changes() == 7  # 3 instances, 2 series, 2 studies
    assert _counts(follower) == (3, 2, 2)
    assert _nearest(follower, LevelValues.INSTANCE, b) == ("1.1.2", pytest.approx(0, abs=1e-3))
    assert follower.follow_changes() == 0  # nothing new

    assert writer.delete_instance("1.1.1")  # the series' mean is now b alone
    assert follower.follow_changes() == 3  # the instance gone, its series and study anew
    assert _counts(follower) == (2, 2, 2)
    assert _nearest(follower, LevelValues.SERIES, b) == ("1.1", pytest.approx(0, abs=1e-3))
    assert _nearest(follower, LevelValues.STUDY, b) == ("1", pytest.approx(0, abs=1e-3))

    conn = connect(writer.catalog)  # the node's deletion, in its own transaction
    with transaction(conn):
        writer.apply(delete_instances(conn, ["2.1.1"]))
    follower.follow_changes()
    assert _counts(follower) == _counts(writer) == (1, 1, 1)


def test_a_restarted_follower_replays_from_its_horizon(
        pair: tuple[IndexSet, IndexSet], tmp_path: Path) -> None:
    writer, follower = pair
    rng = np.random.default_rng(1)
    writer.add_instances([_iv(f"1.1.{i}", "1.1", "1", rng.normal(size=DIM))
                          for i in range(10)], identity=MODEL)
    follower.follow_changes()
    follower.save()
    # the follower stops; meanwhile the writer adds a study and deletes an instance
    late = rng.normal(size=DIM)
    writer.add_instances([_iv("2.1.1", "2.1", "2", late)], identity=MODEL)
    writer.delete_instance("1.1.0")
    again = IndexSet(catalog=writer.catalog, index_dir=tmp_path / "b")
    assert again.load_or_rebuild() == []  # its files loaded, the rest from the log
    assert _counts(again) == _counts(writer) == (10, 2, 2)
    assert _nearest(again, LevelValues.STUDY, late) == ("2", pytest.approx(0, abs=1e-3))


def test_an_index_older_than_the_pruned_log_is_rebuilt(
        pair: tuple[IndexSet, IndexSet], tmp_path: Path) -> None:
    writer, follower = pair
    rng = np.random.default_rng(2)
    writer.add_instances([_iv("1.1.1", "1.1", "1", rng.normal(size=DIM))], identity=MODEL)
    follower.follow_changes()
    follower.save()
    writer.add_instances([_iv("2.1.1", "2.1", "2", rng.normal(size=DIM))], identity=MODEL)
    conn = connect(writer.catalog)
    assert prune_changes(conn, 3600) == 0  # nothing an hour old
    assert prune_changes(conn, 0) == 6  # everything, the follower's missed changes too
    again = IndexSet(catalog=writer.catalog, index_dir=tmp_path / "b")
    assert set(again.load_or_rebuild()) == set(LevelValues)
    assert _counts(again) == (2, 2, 2)
    # the writer's own saved files are rebuilt too: its horizon is below the pruned part
    writer_again = IndexSet(catalog=writer.catalog, index_dir=tmp_path / "a")
    assert set(writer_again.load_or_rebuild()) == set(LevelValues)


def test_a_model_switched_elsewhere_is_rebuilt_here(pair: tuple[IndexSet, IndexSet]) -> None:
    writer, follower = pair
    writer.add_instances([_iv("1.1.1", "1.1", "1", np.ones(DIM))], identity=MODEL)
    follower.follow_changes()
    writer.switch_model("new@abc", 8)  # `index rebuild --model` on another node
    writer.add_instances([_iv("1.1.1", "1.1", "1", np.ones(8)),
                          _iv("1.1.2", "1.1", "1", -np.ones(8))], identity="new@abc")
    follower.follow_changes()
    assert follower.identity == "new@abc" and _counts(follower) == (2, 1, 1)


def test_sqlite_keeps_no_log(tmp_path: Path) -> None:
    ix = IndexSet.open(catalog=tmp_path / "c.sqlite", index_dir=tmp_path / "i", model_id=MODEL,
                       dim=DIM)
    ix.add_instances([_iv("1.1.1", "1.1", "1", np.ones(DIM))], identity=MODEL)
    assert ix.follow_changes() == 0 and prune_changes(ix.connection(), 0) == 0
    assert ix.generation() == 1
