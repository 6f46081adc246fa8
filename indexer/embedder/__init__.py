"""The embedder: an open_clip model that turns pictures and text into unit vectors.

torch and open_clip are imported only inside the functions that need them (the node,
the CLI and most tests start without them).

The model reference (``[model] name``) is any open_clip reference:

- a built-in architecture name (``ViT-B-16``), with ``pretrained`` a tag or a weights file;
- ``hf-hub:ORG/REPO`` (downloaded on first use where the hub can be reached);
- ``local-dir:PATH``: a folder with ``open_clip_config.json`` and the weights
  (``open_clip_pytorch_model.bin`` or ``.safetensors``). When the text tower is a
  Hugging Face model (BiomedCLIP's PubMedBERT) the folder also holds that model's
  ``config.json`` and tokenizer files (``vocab.txt``, ``tokenizer_config.json``); the
  text tower is then built from the folder, so nothing is fetched.

``path`` (``model.path``) names such a folder directly (it becomes ``local-dir:PATH``).

Modules, one concept each: :mod:`~indexer.embedder.loading` (reference to model, with
:data:`DEFAULT_MODEL`), ``_model`` (:class:`Embedder`), :mod:`~indexer.embedder.
preprocessing` (pictures to the input tensor), :mod:`~indexer.embedder.precision`
(device and autocast), :mod:`~indexer.embedder.identity` (what the index records),
:mod:`~indexer.embedder.image_engine` (which engine runs the image tower: on a CPU the
fidelity-checked engine of :mod:`indexer.engines`, on CUDA torch with autocast).
"""

from __future__ import annotations

from indexer.embedder._model import Embedder
from indexer.embedder.identity import weights_hash
from indexer.embedder.image_engine import (
    EnginePrecisionValues,
    EngineValues,
    check_engine_settings,
)
from indexer.embedder.loading import DEFAULT_MODEL, load_embedder
from indexer.embedder.precision import PrecisionValues
from indexer.errors import ModelUnavailable

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "EnginePrecisionValues",
    "EngineValues",
    "ModelUnavailable",
    "PrecisionValues",
    "check_engine_settings",
    "load_embedder",
    "weights_hash",
]
