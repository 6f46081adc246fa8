"""Pictures to the model's input tensor: the model's own preprocessing (resize, centre
crop, normalise), with a fast path for pictures the worker has already cut to the
model's square input size (only the normalisation is left, as one tensor operation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from indexer.normalise import NormalisedImage

if TYPE_CHECKING:
    import torch

__all__ = ["ImageLike", "Normalisation", "image_size", "standard_normalisation", "to_tensor",
           "unit_rows"]

ImageLike = NormalisedImage | npt.NDArray[np.uint8]
#: (mean, std) tensors of a standard preprocessing's last step
Normalisation = tuple[Any, Any]


def image_size(model: Any) -> int:
    """The side of the model's square input, in pixels."""
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    if isinstance(size, (tuple, list)):
        return int(max(size))
    return int(size)


def standard_normalisation(preprocess: Any, size: int) -> Normalisation | None:
    """(mean, std) tensors when ``preprocess`` is Resize(shortest side, bicubic) +
    CenterCrop(size) + to-tensor + Normalize; otherwise None (use the transforms)."""
    names = [type(t).__name__ for t in getattr(preprocess, "transforms", [])]
    if names[:2] != ["Resize", "CenterCrop"] or names[-1] != "Normalize":
        return None
    if not set(names[2:-1]) <= {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb"}:
        return None
    steps = preprocess.transforms
    resize, crop, norm = steps[0], steps[1], steps[-1]
    if str(getattr(resize, "interpolation", "")).lower().find("bicubic") < 0:
        return None
    if tuple(crop.size) != (size, size) or resize.size not in (size, [size], (size,)):
        return None
    import torch

    mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    return mean, std


def to_tensor(
    images: Sequence[ImageLike],
    *,
    preprocess: Any,
    size: int,
    normalisation: Normalisation | None,
    fast: bool = True,
) -> torch.Tensor:
    """H×W×3 uint8 pictures (or :class:`NormalisedImage`) as one preprocessed batch."""
    import torch
    from PIL import Image

    arrays = []
    for item in images:
        pixels = item.pixels if isinstance(item, NormalisedImage) else item
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"images must be H×W×3 uint8, got {pixels.dtype} {pixels.shape}")
        arrays.append(pixels)
    square = all(a.shape[:2] == (size, size) for a in arrays)
    if fast and normalisation is not None and square:
        mean, std = normalisation
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        normalised: torch.Tensor = (x - mean) / std
        return normalised
    return torch.stack([preprocess(Image.fromarray(a, "RGB")) for a in arrays])


def unit_rows(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Each row scaled to unit length."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
