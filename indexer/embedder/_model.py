"""The :class:`Embedder`: an open_clip model, its preprocessing and tokenizer, on one
device, turning pictures and texts into unit vectors. The image tower runs on torch or,
on a CPU, on an engine of :mod:`indexer.engines` (:mod:`~indexer.embedder.image_engine`);
the text tower always on torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from indexer._enums import to_member
from indexer.embedder.identity import display_name, weights_hash
from indexer.embedder.precision import AUTOCAST, PrecisionValues
from indexer.embedder.preprocessing import (
    ImageLike,
    image_size,
    standard_normalisation,
    to_tensor,
    unit_rows,
)

if TYPE_CHECKING:
    import torch

    from indexer.engines import ImageEncoder

__all__ = ["Embedder"]


class Embedder:
    """An open_clip model, its preprocessing and tokenizer, on one device.

    ``embed_images`` and ``embed_texts`` return float32 arrays of shape ``(n, dim)``
    whose rows have unit length. ``identity`` is the model reference plus a short hash
    of the weights: the index stores it and refuses vectors of another identity.

    ``image_encoder``, when given, runs the image tower instead of torch (an engine of
    this model that passed the fidelity check, :func:`indexer.engines.open_image_encoder`;
    its identity must be this model's). ``engine`` names what runs the image tower.
    """

    def __init__(
        self,
        *,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        name: str,
        device: str = "cpu",
        autocast_dtype: PrecisionValues | str | None = None,
        batch_size: int = 32,
        identity: str | None = None,
        image_encoder: ImageEncoder | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        autocast = (
            None if autocast_dtype is None
            else to_member(PrecisionValues, autocast_dtype, name="autocast_dtype")
        )
        if autocast is not None and autocast not in AUTOCAST:
            raise ValueError(
                f"autocast_dtype must be None, 'fp16' or 'bf16', got {autocast_dtype!r}"
            )
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self.name = name
        self.device = device
        self.autocast_dtype = autocast
        self.batch_size = batch_size
        self.image_size = image_size(model)
        self._normalisation = standard_normalisation(preprocess, self.image_size)
        self.identity = identity or f"{display_name(name)}@{weights_hash(model)}"
        if image_encoder is not None and image_encoder.identity != self.identity:
            raise ValueError(
                f"image_encoder is an engine of {image_encoder.identity!r}, not of this "
                f"model {self.identity!r}"
            )
        self._image_encoder = image_encoder
        self.engine = self._engine_name()
        self.dim = int(self.embed_images([np.zeros((8, 8, 3), np.uint8)]).shape[1])
        if image_encoder is not None:
            self._check_engine_dim()

    def __repr__(self) -> str:
        autocast = None if self.autocast_dtype is None else self.autocast_dtype.value
        return (
            f"Embedder(identity={self.identity!r}, dim={self.dim}, device={self.device!r}, "
            f"autocast={autocast!r}, engine={self.engine!r})"
        )

    def _engine_name(self) -> str:
        if self._image_encoder is not None:
            return self._image_encoder.engine
        precision = "fp32" if self.autocast_dtype is None else self.autocast_dtype.value
        on = self.device.split(":")[0]
        return f"torch {precision}" + ("" if on == "cpu" else f" ({on})")

    def _check_engine_dim(self) -> None:
        import torch

        probe = self.to_tensor([np.zeros((8, 8, 3), np.uint8)])
        with torch.inference_mode(), self._autocast():
            torch_dim = int(self._model.encode_image(probe.to(self.device)).shape[1])
        if torch_dim != self.dim:
            raise ValueError(f"image_encoder gives {self.dim}-d vectors, the model {torch_dim}-d")

    def _autocast(self) -> Any:
        import torch

        if self.autocast_dtype is None:
            return torch.autocast(self.device.split(":")[0], enabled=False)
        dtype = torch.bfloat16 if self.autocast_dtype is PrecisionValues.BF16 else torch.float16
        return torch.autocast(self.device.split(":")[0], dtype=dtype)

    @property
    def crops_to_square(self) -> bool:
        """True when the model's preprocessing is resize-shortest-side + centre crop: the
        worker then hands over ``image_size``² pictures, which skip the PIL transforms."""
        return self._normalisation is not None

    def to_tensor(self, images: Sequence[ImageLike], *, fast: bool = True) -> torch.Tensor:
        """The model's own preprocessing (resize, crop, normalise) on a list of pictures.

        Pictures already ``image_size``² (what the worker sends) are only normalised, as
        one tensor operation, when the preprocessing is the standard one.
        """
        return to_tensor(
            images, preprocess=self._preprocess, size=self.image_size,
            normalisation=self._normalisation, fast=fast,
        )

    def embed_tensor(self, batch: torch.Tensor) -> npt.NDArray[np.float32]:
        """One forward of the image tower on preprocessed pixels (no batching)."""
        import torch

        if self._image_encoder is not None:
            x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
            return unit_rows(self._image_encoder.encode(x))
        with torch.inference_mode(), self._autocast():
            feats = self._model.encode_image(batch.to(self.device, non_blocking=True))
        return unit_rows(feats.float().cpu().numpy())

    def embed_images(self, images: Sequence[ImageLike]) -> npt.NDArray[np.float32]:
        """Embed pictures (H×W×3 uint8 or :class:`NormalisedImage`) in batches."""
        out = [
            self.embed_tensor(self.to_tensor(images[i : i + self.batch_size]))
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, getattr(self, "dim", 0)), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts (a report, a query) in batches, with the model's own tokenizer."""
        import torch

        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(list(texts[i : i + self.batch_size]))
            with torch.inference_mode(), self._autocast():
                feats = self._model.encode_text(tokens.to(self.device))
            out.append(unit_rows(feats.float().cpu().numpy()))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
