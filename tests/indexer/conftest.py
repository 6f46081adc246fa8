"""Fixtures of the indexer tests: a tiny open_clip model with random weights, loaded
through ``local-dir:`` exactly as real weights would be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
