"""Fixtures for the viewer tests: a seeded real node, a settings file, a minimal host."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@dataclass(frozen=True)
class SeededStudy:
    study_instance_uid: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class SeededNode:
    """The session's real node, with demo studies stored and indexed."""

    node: Any  # tests.conftest.RunningNode
    studies: tuple[SeededStudy, ...]

    @property
    def url(self) -> str:
        return str(self.node.http_url)

    @property
    def token(self) -> str:
        return str(self.node.admin_token or self.node.read_token or "")

    def stored_study_uids(self) -> set[str]:
        """Every study the node holds (other test modules may have stored more)."""
        from viewer_plugin.client import NodeSettings, PrecedentClient

        with PrecedentClient(NodeSettings(url=self.url, token=self.token)) as client:
            return {str(s["0020000D"]["Value"][0]) for s in client.search_studies()}

    def labels_of(self, uid: str) -> tuple[str, ...]:
        for s in self.studies:
            if s.study_instance_uid == uid:
                return s.labels
        raise KeyError(uid)


def _as_seeded(item: Any) -> SeededStudy:
    """One entry of whatever ``seed_demo`` returns, as (study UID, labels)."""
    if isinstance(item, tuple) and len(item) == 2:
        uid, labels = item
    elif isinstance(item, dict):
        uid = item.get("study_instance_uid") or item.get("StudyInstanceUID") or item.get("uid")
        labels = item.get("labels") or item.get("finding") or ()
    else:
        uid = item.study_instance_uid
        labels = getattr(item, "labels", None) or getattr(item, "finding", None) or ()
    if isinstance(labels, str):
        labels = (labels,)
    return SeededStudy(str(uid), tuple(str(x) for x in labels))


@pytest.fixture(scope="session")
def seeded_node(running_node: Any) -> SeededNode:
    """``running_node`` with demo studies (SR reports, labels), indexed."""
    seed = getattr(running_node, "seed_demo", None)
    if seed is None:
        pytest.skip("running_node.seed_demo is not available yet")
    result = seed(n_studies=12, seed=51)  # its own patients: other modules seed the node too
    if isinstance(result, dict):
        items: Sequence[Any] = list(result.items())
    else:
        items = list(getattr(result, "studies", result))
    studies = tuple(_as_seeded(i) for i in items)
    assert len(studies) >= 8, f"seed_demo gave {len(studies)} studies"
    return SeededNode(running_node, studies)


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
