"""Fixtures of the indexer tests: a tiny open_clip model with random weights, loaded
through ``local-dir:`` exactly as real weights would be; and ``target``, the catalog the
tests that touch one run on: a SQLite file, then a fresh PostgreSQL database (the pure
unit tests take no catalog and run once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, catalog_for

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = Path(__file__).parent.parent / "assets" / "models"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests._models import write_random_model_dir

    return write_random_model_dir(MODELS / "tiny", tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_dir: Path):  # type: ignore[no-untyped-def]
    from indexer.embedder import load_embedder

    return load_embedder(name=f"local-dir:{tiny_dir}", device="cpu", precision="fp32", batch_size=8)


@pytest.fixture(scope="session")
def biomedclip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BiomedCLIP's real architecture (timm ViT-B/16 + PubMedBERT-shaped BERT) with random
    weights, as a ``local-dir:`` folder (written once per session: about 10 s)."""
    from tests._models import write_random_model_dir

    return write_random_model_dir(MODELS / "biomedclip", tmp_path_factory.mktemp("biomedclip"))


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """The catalog of one test: ``tmp_path/catalog.sqlite``, or a fresh PostgreSQL
    database's URL."""
    url = catalog_for(request, str(request.param))
    return tmp_path / "catalog.sqlite" if url is None else url


@pytest.fixture(scope="module", params=BACKENDS)
def module_target(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> str | Path:
    """:func:`target` shared by a module's tests."""
    url = catalog_for(request, str(request.param))
    return tmp_path_factory.mktemp("catalog") / "catalog.sqlite" if url is None else url
