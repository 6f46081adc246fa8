"""The web tests run on both catalog back ends: every node they start (``make_node``,
``running_node``) keeps its catalog in SQLite, then in a fresh PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest

from database import Target
from tests.conftest import BACKENDS, catalog_for


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    return catalog_for(request, request.param)


@pytest.fixture(scope="session", params=BACKENDS)
def session_catalog_url(request: pytest.FixtureRequest) -> str | None:
    return catalog_for(request, request.param)


@pytest.fixture
def catalog_target(tmp_path: Path, catalog_url: str | None) -> Target:
    """The catalog of a test that opens it directly (``Ingest``, ``connect``): the
    PostgreSQL database of ``catalog_url``, else a SQLite file in ``tmp_path``."""
    return catalog_url or tmp_path / "catalog.sqlite"


@pytest.fixture(scope="module", params=BACKENDS)
def module_catalog_url(request: pytest.FixtureRequest) -> str | None:
    """The catalog of a module's shared node (a fresh PostgreSQL database per module)."""
    return catalog_for(request, request.param)
