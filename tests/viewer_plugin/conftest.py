"""Fixtures for the viewer tests: a real node of the viewer tests' own (seeded with
synthetic studies and with real scans), a settings file, a minimal host.

The node is started for this package alone, like the suite's ``running_node`` (same
``start_node``, same tiny model): what it holds is then exactly what these tests put
there, so every check can be unconditional, and the Key Object Selections the tests
send stay out of the node other packages share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

from tests.viewer_plugin._scans import StoredScan, store_scans

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@dataclass(frozen=True)
class SeededStudy:
    study_instance_uid: str
    labels: tuple[str, ...]
    patient_id: str = ""


@dataclass(frozen=True)
class SeededNode:
    """The viewer tests' real node, with demo studies stored and indexed."""

    node: Any  # tests.conftest.RunningNode
    studies: tuple[SeededStudy, ...]

    @property
    def url(self) -> str:
        return str(self.node.http_url)

    @property
    def token(self) -> str:
        return str(self.node.admin_token or self.node.read_token or "")

    def stored_study_uids(self) -> set[str]:
        """Every study the node holds."""
        from viewer_plugin.client import NodeSettings, PrecedentClient

        with PrecedentClient(NodeSettings(url=self.url, token=self.token)) as client:
            return {str(s["0020000D"]["Value"][0]) for s in client.search_studies()}

    def labels_of(self, uid: str) -> tuple[str, ...]:
        for s in self.studies:
            if s.study_instance_uid == uid:
                return s.labels
        raise KeyError(uid)


@pytest.fixture(scope="package")
def viewer_node(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Any]:
    """A node of the viewer tests' own (``tests.conftest.start_node``)."""
    from tests.conftest import start_node

    running = start_node(tmp_path_factory.mktemp("viewer-node"), tiny_model_dir)
    running.wait_model()
    yield running
    running.stop()


@pytest.fixture(scope="package")
def seeded_node(viewer_node: Any) -> SeededNode:
    """``viewer_node`` with 12 synthetic CT studies (SR-free reports with labels), indexed."""
    result = viewer_node.seed_demo(n_studies=12, seed=51)
    studies = tuple(SeededStudy(s.study_instance_uid, (s.finding,), s.patient_id)
                    for s in result)
    assert len(studies) == 12
    return SeededNode(viewer_node, studies)


@pytest.fixture(scope="package")
def real_scans(seeded_node: SeededNode) -> tuple[StoredScan, ...]:
    """Real CT, MR and CR scans (pydicom-data) with SR reports, on the same node, indexed."""
    stored = store_scans(seeded_node.url)
    seeded_node.node.wait_indexed()
    return stored


@pytest.fixture
def qsettings(tmp_path: Path) -> Any:
    """A QSettings in a file of its own (never the user's real settings)."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "viewer.ini"), QSettings.Format.IniFormat)


@dataclass
class Host:
    """The smallest :class:`viewer_plugin.contract.ViewerHost`: a fixed current study."""

    study: str | Sequence[Dataset] | None = None
    opened: list[str] = field(default_factory=list)

    def current_study(self) -> str | Sequence[Dataset] | None:
        return self.study

    def open_study(self, study_uid: str) -> None:
        self.opened.append(study_uid)


@pytest.fixture
def screenshots() -> Iterator[Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield SCREENSHOTS
