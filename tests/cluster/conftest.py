"""The cluster tests: what runs on both back ends (the once-only event, the duties) gets
``target`` (a SQLite file, then a fresh PostgreSQL database); the registry, the leader
and the cluster of processes need PostgreSQL (``postgres_url``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import BACKENDS, catalog_for


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """The catalog of one test: ``tmp_path/catalog.sqlite``, or a fresh PostgreSQL
    database's URL."""
    url = catalog_for(request, str(request.param))
    return tmp_path / "catalog.sqlite" if url is None else url
