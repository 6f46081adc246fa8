"""``precedent catalog migrate``: a node's SQLite catalog (vectors, reports, a failed
instance, a backfill plan) moved into a real PostgreSQL, row for row; resumed after an
interruption; refused where it would lose or mix data; and a node on the target that
answers as the old one did, with the same index files (nothing embedded again)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import database
from node.commands import _migration
from node.storage import connect as open_catalog
from node.storage.study_reports import search_reports
from tests._peers import free_port
from tests.backfill._cli import precedent
from tests.conftest import RunningNode
from tests.migrate.conftest import SourceFolder, answers_of


@contextlib.contextmanager
def _target(url: str) -> Iterator[database.Connection]:
    conn = database.connect(url)
    try:
        yield conn
    finally:
        conn.close()


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql).fetchall()]


def assert_same_rows(catalog: Path, url: str, *, left_out: dict[str, set[int]] | None = None
                     ) -> None:
    """Every owned table holds the same rows, rowids included, on both sides."""
    src = sqlite3.connect(catalog)
    dst = database.connect(url)
    try:
        present = set(database.source_tables(src))
        for table, key in _migration.owned_tables():
            if table not in present:
                continue
            columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            listed = ", ".join(["rowid", *columns])
            order = ", ".join(key)
            expected = [r for r in _rows(src, f"SELECT {listed} FROM {table} ORDER BY {order}")
                        if r[0] not in (left_out or {}).get(table, set())]
            got = _rows(dst, f"SELECT {listed} FROM {table} ORDER BY {order}")
            assert [tuple(r) for r in got] == expected, table
    finally:
        src.close()
        dst.close()


def _counts(catalog: Path) -> dict[str, int]:
    conn = sqlite3.connect(catalog)
    try:
        present = set(database.source_tables(conn))
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t, _ in _migration.owned_tables() if t in present}
    finally:
        conn.close()


def test_a_catalog_moves_whole_and_the_node_answers_the_same(
    source: SourceFolder, tmp_path: Path, postgres_url: str,
    make_node: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture,
) -> None:
    folder = source.copy(tmp_path / "data")
    catalog = folder / "catalog.sqlite"
    index_files = {p: p.stat().st_mtime_ns for p in (folder / "index").glob("*.usearch")}
    assert index_files
    port = free_port()  # the node's HTTP port, in the settings both commands read
    result = precedent("catalog", "migrate", "--to", postgres_url, "--batch", "3",
                       "--data-dir", str(folder), env={"PRECEDENT_HTTP__PORT": str(port)})
    assert result.returncode == 0, result.stderr
    assert f"the index files are in {folder / 'index'}/" in result.stderr
    counts = _counts(catalog)
    assert counts["vectors"] > 0 and counts["reports"] == 3 and counts["backfill_windows"] == 3
    assert counts["duties"] >= 1
    for table, n in counts.items():  # one line per table, its count
        assert any(line.split() == [table, str(n)] for line in result.stdout.splitlines()), (
            table, result.stdout)
    assert "every count equal" in result.stderr and "Traceback" not in result.stderr
    assert_same_rows(catalog, postgres_url)
    with _target(postgres_url) as dst:
        assert dst.execute("SELECT count(*) FROM work WHERE state = 'failed'").fetchone()[0] == 1

    caplog.set_level(logging.INFO, logger="indexer.index")
    node = make_node(data_dir=folder, catalog_url=postgres_url, http={"port": port})
    node.http_url = f"http://127.0.0.1:{port}"  # start_node names the port it picked
    node.wait_model()
    # the saved usearch files were loaded as they are: nothing embedded, nothing rebuilt
    assert not [r for r in caplog.records if "rebuilt" in r.getMessage()]
    assert node.counts()["by_state"]["pending"] == 0  # nothing queued to embed again
    assert answers_of(node, source.study_uids) == source.answers
    # the reports' full-text search: FTS5 there, the tsvector filled by PostgreSQL here
    with _target(postgres_url) as dst:
        found = search_reports(dst, "effusion nodule", 10)
    src = database.connect(catalog)
    try:
        assert sorted(found) == sorted(search_reports(src, "effusion nodule", 10))
        assert found
    finally:
        src.close()
    assert {p: p.stat().st_mtime_ns for p in index_files} == index_files  # not rebuilt
    with _target(postgres_url) as dst:  # the identities go on after the copied keys
        top = dst.execute("SELECT max(rowid) AS m FROM studies").fetchone()[0]
    node.seed_demo(n_studies=1, instances_per_study=1, seed=3)
    with _target(postgres_url) as dst:
        assert dst.execute("SELECT max(rowid) AS m FROM studies").fetchone()[0] == top + 1


class _StopAfter:
    """Progress that interrupts the migration after ``batches`` batches."""

    def __init__(self, batches: int) -> None:
        self.left = batches
        self.tables: list[str] = []
        self.done: dict[str, int] = {}

    def table(self, name: str, total: int, done: int) -> None:
        self.tables.append(name)
        self.done[name] = done

    def advance(self, name: str, rows: int) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


def test_an_interrupted_migration_resumes_and_ends_identical(
    source: SourceFolder, tmp_path: Path, postgres_url: str,
) -> None:
    folder = source.copy(tmp_path / "data")
    catalog = folder / "catalog.sqlite"
    # opened once already (a command read its settings there): still an empty target
    open_catalog(postgres_url).close()
    stop = _StopAfter(batches=6)
    with pytest.raises(KeyboardInterrupt):
        _migration.migrate(catalog, postgres_url, batch=2, progress=stop)
    assert stop.tables == ["studies", "series", "instances"]  # stopped in instances
    with _target(postgres_url) as dst:
        partial = database.progress_of(dst)
        assert partial["instances"].finished_at is None and partial["instances"].copied == 4
        assert database.count_rows(dst, "instances") == 4
        assert partial["reports"].last_key is None and partial["reports"].copied == 0
    resumed = _StopAfter(batches=10_000)
    again = _migration.migrate(catalog, postgres_url, batch=2, progress=resumed)
    assert resumed.done["studies"] == 4 and resumed.done["instances"] == 4  # where it was
    assert all(c.equal for c in again)
    assert_same_rows(catalog, postgres_url)
    with pytest.raises(_migration.MigrationError, match=r"migrated .* already: nothing to do"):
        _migration.migrate(catalog, postgres_url, batch=2)


def test_a_target_holding_other_data_is_refused(source: SourceFolder, tmp_path: Path,
                                                postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE patients_elsewhere (id int)")
        conn.execute("INSERT INTO patients_elsewhere VALUES (1)")
    result = precedent("catalog", "migrate", "--to", postgres_url,
                       "--data-dir", str(source.copy(tmp_path / "data")))
    assert result.returncode == 2
    [line] = [x for x in result.stderr.splitlines() if "already holds data" in x]
    assert "(patients_elsewhere)" in line and "empty database" in line
    with psycopg.connect(postgres_url) as conn:  # nothing was made there
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE "
                            "table_name = 'studies'").fetchone()[0] == 0


def test_orphans_are_reported_then_left_out_when_asked(source: SourceFolder, tmp_path: Path,
                                                       postgres_url: str) -> None:
    folder = source.copy(tmp_path / "data")
    catalog = folder / "catalog.sqlite"
    conn = sqlite3.connect(catalog)
    with conn:
        series = conn.execute("SELECT series_instance_uid FROM series LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM series WHERE series_instance_uid = ?", (series,))
        orphaned = {r[0] for r in conn.execute(
            "SELECT rowid FROM instances WHERE series_instance_uid = ?", (series,))}
        keyless = conn.execute("INSERT INTO reports (study_instance_uid, text, source,"
                               " updated_at) VALUES (NULL, 'x', 'SEED', 0)").lastrowid
    conn.close()
    result = precedent("catalog", "migrate", "--to", postgres_url, "--data-dir", str(folder))
    assert result.returncode == 2
    [line] = [x for x in result.stderr.splitlines() if x.startswith("precedent: instances:")]
    assert line == (
        f"precedent: instances: {len(orphaned)} rows name a series_instance_uid missing from "
        "series; PostgreSQL refuses them: run again with --drop-orphans to leave them out, "
        f"or restore the missing series rows in {catalog}")
    [line] = [x for x in result.stderr.splitlines() if x.startswith("precedent: reports:")]
    assert line.startswith("precedent: reports: 1 rows have no study_instance_uid (their "
                           "key); PostgreSQL refuses them: run again with --drop-orphans")
    assert "Traceback" not in result.stderr
    result = precedent("catalog", "migrate", "--to", postgres_url, "--drop-orphans",
                       "--data-dir", str(folder))
    assert result.returncode == 0, result.stderr
    assert f"({len(orphaned)} orphans left out)" in result.stdout
    assert "(1 orphans left out)" in result.stdout
    assert_same_rows(catalog, postgres_url,
                     left_out={"instances": orphaned, "reports": {keyless}})


def test_refused_while_the_node_holds_the_data_folder(
    source: SourceFolder, tmp_path: Path, postgres_url: str,
    make_node: Callable[..., RunningNode],
) -> None:
    folder = source.copy(tmp_path / "data")
    make_node(data_dir=folder, no_model=True)
    result = precedent("catalog", "migrate", "--to", postgres_url, "--data-dir", str(folder))
    assert result.returncode == 2
    lines = [x for x in result.stderr.splitlines() if x.startswith("precedent: the data")]
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0] and "stop it" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("target, says", [
    ("postgresql://nobody@127.0.0.1:{port}/none", "precedent: cannot open the catalog"),
    ("mysql://nobody@127.0.0.1/none", "is not supported"),
])
def test_one_line_errors(source: SourceFolder, tmp_path: Path, target: str, says: str) -> None:
    result = precedent("catalog", "migrate", "--to", target.format(port=free_port()),
                       "--data-dir", str(source.copy(tmp_path / "data")))
    assert result.returncode == 2
    errors = [x for x in result.stderr.splitlines() if x.startswith("precedent: ")
              and not x.startswith("precedent: data folder")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_without_a_catalog_says_so(tmp_path: Path, postgres_url: str) -> None:
    result = precedent("catalog", "migrate", "--to", postgres_url,
                       "--data-dir", str(tmp_path / "empty"))
    assert result.returncode == 2
    assert "no catalog at" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_catalog_in_the_settings_is_one_line(source: SourceFolder,
                                                           tmp_path: Path,
                                                           postgres_url: str) -> None:
    gone = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    result = precedent("catalog", "migrate", "--to", postgres_url,
                       "--data-dir", str(source.copy(tmp_path / "data")),
                       env={"PRECEDENT_CATALOG__URL": gone})
    assert result.returncode == 2
    assert "precedent: cannot open the catalog" in result.stderr
    assert "Traceback" not in result.stderr
