"""No file without its row and no row without its file: a failure at each step of a
store, a crash at each step (simulated in-process, and a real SIGKILL), an interrupted
replacement, and what the next start makes of what a crash left behind.
(What a DIMSE peer sees of a failed store: tests/node/test_dimse_store.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from database import Target
from node.storage import Ingest
from node.storage.ingest import IngestStepValues
from tests._synthetic import ct_instance, to_bytes
from tests.conftest import BACKENDS, catalog_for

STUDY, SERIES = "1.2.826.0.1.55", "1.2.826.0.1.55.1"


class Failure(Exception):
    """An injected failure."""


class Crash(BaseException):
    """An injected crash: like SIGKILL, nothing catches it and nothing is undone."""


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    return catalog_for(request, request.param)


@pytest.fixture
def target(tmp_path: Path, catalog_url: str | None) -> Target:
    """The catalog of the tests' data folder (``tmp_path``, or ``tmp_path / "data"``)."""
    return catalog_url or tmp_path / "catalog.sqlite"


def _instance(description: str = "first") -> bytes:
    ds = ct_instance(study_uid=STUDY, series_uid=SERIES, patient_id="P55", seed=1)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = SERIES + ".1"
    ds.StudyDescription = description
    return to_bytes(ds)


def _ingest(data_dir: Path, catalog: Target, *, policy: str = "keep_first",
            at: IngestStepValues | None = None,
            raising: Callable[[], BaseException] = Failure) -> Ingest:
    def after_step(step: IngestStepValues) -> None:
        if step is at:
            raise raising()

    return Ingest(data_dir=data_dir, catalog=catalog,
                  duplicate_policy=policy, after_step=after_step)


def _state(data_dir: Path, catalog: Target) -> tuple[dict[str, str], list[str], list[str]]:
    """(catalog rows sop → path, files under dicom/, parts in tmp/)."""
    from node.storage import connect

    conn = connect(catalog)
    try:
        rows = dict(conn.execute("SELECT sop_instance_uid, path FROM instances").fetchall())
    finally:
        conn.close()
    files = sorted(str(p.relative_to(data_dir)) for p in (data_dir / "dicom").rglob("*")
                   if p.is_file()) if (data_dir / "dicom").exists() else []
    parts = sorted(p.name for p in (data_dir / "tmp").glob("*.part"))
    return rows, files, parts


@pytest.mark.parametrize("step", [IngestStepValues.WRITTEN, IngestStepValues.LINKED])
def test_a_failure_before_the_commit_leaves_nothing(tmp_path: Path, target: Target,
                                                    step: IngestStepValues) -> None:
    ingest = _ingest(tmp_path, target, at=step)
    with pytest.raises(Failure):
        ingest.store(_instance(), source="TEST")
    assert _state(tmp_path, target) == ({}, [], [])


def test_a_failure_after_the_commit_keeps_the_instance(tmp_path: Path, target: Target) -> None:
    """The row is committed: the store succeeds; its journal entry waits for the next
    start, which keeps the file."""
    ingest = _ingest(tmp_path, target, at=IngestStepValues.COMMITTED)
    stored = ingest.store(_instance(), source="TEST")
    rows, files, parts = _state(tmp_path, target)
    assert rows == {stored.sop_instance_uid: stored.path} and files == [stored.path]
    assert len(parts) == 1
    ingest.close()
    assert _ingest(tmp_path, target).recovered == 1
    assert _state(tmp_path, target) == ({stored.sop_instance_uid: stored.path}, [stored.path], [])


@pytest.mark.parametrize(("step", "kept"), [(IngestStepValues.WRITTEN, False),
                                            (IngestStepValues.LINKED, False),
                                            (IngestStepValues.COMMITTED, True)])
def test_a_crash_at_each_step_is_settled_at_the_next_start(tmp_path: Path, target: Target,
                                                           step: IngestStepValues,
                                                           kept: bool) -> None:
    crashed = _ingest(tmp_path, target, at=step, raising=Crash)
    with pytest.raises(Crash):
        crashed.store(_instance(), source="TEST")
    crashed.close()  # the process is gone: so is its lock
    rows, files, parts = _state(tmp_path, target)
    assert len(parts) == 1 and len(files) == (0 if step is IngestStepValues.WRITTEN else 1)
    _ingest(tmp_path, target)  # the next start
    rows, files, parts = _state(tmp_path, target)
    assert parts == []
    if kept:
        assert list(rows.values()) == files and len(files) == 1
        assert pydicom.dcmread(tmp_path / files[0]).StudyDescription == "first"
    else:
        assert (rows, files) == ({}, [])


@pytest.mark.parametrize(("step", "description"), [(IngestStepValues.LINKED, "first"),
                                                   (IngestStepValues.COMMITTED, "second")])
def test_an_interrupted_replacement_keeps_exactly_one_copy(tmp_path: Path, target: Target,
                                                           step: IngestStepValues,
                                                           description: str) -> None:
    """duplicate_policy replace: a crash before the commit keeps the first copy (its
    row and file untouched); after it, the second, and the first file goes."""
    first = _ingest(tmp_path, target, policy="replace").store(_instance("first"), source="TEST")
    crashed = _ingest(tmp_path, target, policy="replace", at=step, raising=Crash)
    with pytest.raises(Crash):
        crashed.store(_instance("second"), source="TEST")
    crashed.close()
    _ingest(tmp_path, target, policy="replace")
    rows, files, parts = _state(tmp_path, target)
    assert parts == [] and list(rows.values()) == files and len(files) == 1
    assert pydicom.dcmread(tmp_path / files[0]).StudyDescription == description
    assert (files[0] == first.path) is (description == "first")


def test_a_second_ingest_on_the_folder_leaves_the_journal_alone(tmp_path: Path, target: Target) -> None:
    """Recovery runs only where no other Ingest uses the folder: a store in flight in
    another process is never settled under it."""
    crashed = _ingest(tmp_path, target, at=IngestStepValues.LINKED, raising=Crash)
    with pytest.raises(Crash):
        crashed.store(_instance(), source="TEST")
    # crashed still holds the folder (as a live process would): nothing is settled
    assert _ingest(tmp_path, target).recovered == 0
    assert len(_state(tmp_path, target)[2]) == 1
    crashed.close()


_KILL_AT = """
import os, signal, sys
from pathlib import Path
from node.storage import Ingest
from node.storage.ingest import IngestStepValues
data_dir, step, catalog = Path(sys.argv[1]), IngestStepValues(sys.argv[2]), sys.argv[3]
def after_step(done):
    if done is step:
        os.kill(os.getpid(), signal.SIGKILL)
ingest = Ingest(data_dir=data_dir, catalog=catalog, after_step=after_step)
ingest.store(sys.stdin.buffer.read(), source="TEST")
"""


@pytest.mark.parametrize(("step", "kept"), [(IngestStepValues.LINKED, False),
                                            (IngestStepValues.COMMITTED, True)])
def test_sigkill_between_the_file_and_the_row(make_node, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              catalog_url: str | None,
                                              step: IngestStepValues, kept: bool) -> None:
    """A process killed right after the file is in place (before its row), or right
    after the commit: the node started on the folder next has the file and its row, or
    neither."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    catalog = catalog_url or str(data_dir / "catalog.sqlite")
    killed = subprocess.run([sys.executable, "-c", _KILL_AT, str(data_dir), step.value,
                             str(catalog)],
                            input=_instance(), capture_output=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert killed.returncode == -9, killed.stderr.decode(errors="replace")[-2000:]
    assert len(_state(data_dir, catalog)[1]) == 1  # the file was in place when it died
    node = make_node(no_model=True, data_dir=data_dir)
    rows, files, parts = _state(node.data_dir, catalog)
    assert parts == []
    assert (rows, files) == (({SERIES + ".1": files[0]}, files) if kept else ({}, []))


def test_a_file_left_without_its_row_is_gone_after_a_restart(make_node,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path,
                                                              catalog_url: str | None
                                                              ) -> None:
    """What a crash between the file and the row leaves (the file in place, its journal
    entry in tmp/, no row), made by hand: the node started on the folder removes both."""
    data_dir = tmp_path / "data"
    target = data_dir / "dicom" / STUDY / SERIES / f"{SERIES}.1.dcm"
    target.parent.mkdir(parents=True)
    target.write_bytes(_instance())
    (data_dir / "tmp").mkdir()
    os.link(target, data_dir / "tmp" / f"{STUDY}+{SERIES}+{SERIES}.1+0badc0de.part")
    node = make_node(no_model=True, data_dir=data_dir)
    assert _state(node.data_dir, catalog_url or data_dir / "catalog.sqlite") == ({}, [], [])
