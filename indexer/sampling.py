"""Volume sampling: which slices of a series, or frames of a multi-frame object, are
embedded. Pure functions; the decision is recorded by :mod:`indexer.slices`.

A volume (the single-frame slices of one CT, MR, PET or NM series, or the frames of one
multi-frame object) is represented by ``k`` slices chosen evenly along the slice axis:
the members are put in order (ImagePositionPatient projected on the normal of
ImageOrientationPatient; InstanceNumber where a member has no position; the SOP Instance
UID last, so that the order is total) and the ``k`` members at the centres of ``k``
equal parts of that order are taken. ``k = 0`` takes every member; a series of at most
``k`` slices is embedded whole. The choice depends only on the set of members, never on
the order they arrived in, so a series gives the same sample by C-STORE, STOW-RS or
import.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence

from indexer.image_plane import Orientation, SliceHeader, normal, project

__all__ = [
    "DEFAULT_SLICES_PER_SERIES",
    "VolumeSampling",
    "choose_frames",
    "choose_slices",
    "evenly",
    "order_slices",
]

DEFAULT_SLICES_PER_SERIES = 16


@dataclasses.dataclass(frozen=True)
class VolumeSampling:
    """How volumes are sampled (``[indexer]`` settings).

    ``slices_per_series``: slices (or frames) embedded per volume, 0 for every one;
    ``per_modality``: the same per Modality (``{"MR": 24, "PT": 0}``), overriding it;
    ``series_quiet_s``: a series is complete when no slice of it has arrived for this long
    (or when its study is stable, whichever comes first).
    """

    slices_per_series: int = DEFAULT_SLICES_PER_SERIES
    per_modality: Mapping[str, int] = dataclasses.field(default_factory=dict)
    series_quiet_s: float = 10.0

    def __post_init__(self) -> None:
        if self.slices_per_series < 0:
            raise ValueError(
                f"slices_per_series must be 0 (every slice) or more, got {self.slices_per_series}"
            )
        if self.series_quiet_s < 0:
            raise ValueError(f"series_quiet_s must not be negative, got {self.series_quiet_s}")
        upper: dict[str, int] = {}
        for modality, k in self.per_modality.items():
            if k < 0:
                raise ValueError(
                    f"per_modality[{modality!r}] must be 0 (every slice) or more, got {k}"
                )
            upper[str(modality).strip().upper()] = int(k)
        object.__setattr__(self, "per_modality", upper)

    @classmethod
    def every_slice(cls) -> VolumeSampling:
        """No sampling: every slice and frame embedded, each as it arrives (as before)."""
        return cls(slices_per_series=0)

    def k(self, modality: str | None) -> int:
        """Slices per volume for this modality (0: every slice)."""
        key = (modality or "").strip().upper()
        return self.per_modality.get(key, self.slices_per_series)


def evenly(n: int, k: int) -> list[int]:
    """``k`` of the indices ``0 … n-1``, one at the centre of each of ``k`` equal parts
    (all of them when ``k`` is 0 or at least ``n``). ``k = 1`` gives the middle one."""
    if n < 0 or k < 0:
        raise ValueError(f"n and k must not be negative, got n={n}, k={k}")
    if k == 0 or k >= n:
        return list(range(n))
    return [((2 * i + 1) * n) // (2 * k) for i in range(k)]


def _axis(orientations: Sequence[Orientation]) -> tuple[float, float, float] | None:
    """The normal of the series' most common orientation (ties: the smallest)."""
    rounded = Counter(tuple(round(v, 4) for v in o) for o in orientations)
    if not rounded:
        return None
    top = max(rounded.values())
    best = min(o for o, n in rounded.items() if n == top)
    return normal((best[0], best[1], best[2], best[3], best[4], best[5]))


def order_slices(members: Sequence[SliceHeader]) -> list[SliceHeader]:
    """The members in order along the slice axis (see the module docstring)."""
    orientations = [m.orientation for m in members if m.orientation is not None]
    axis = _axis(orientations) if len(orientations) == len(members) else None
    if axis is not None and all(m.position is not None for m in members):
        def along(m: SliceHeader) -> tuple[float, int, str]:
            assert m.position is not None
            place = round(project(m.position, axis), 4)
            number = m.instance_number if m.instance_number is not None else 1 << 62
            return (place, number, m.sop_instance_uid)

        return sorted(members, key=along)

    def by_number(m: SliceHeader) -> tuple[bool, int, str]:
        return (m.instance_number is None, m.instance_number or 0, m.sop_instance_uid)

    return sorted(members, key=by_number)


def choose_slices(members: Sequence[SliceHeader], k: int) -> list[str]:
    """The SOP Instance UIDs of the ``k`` slices that represent the series, in order."""
    ordered = order_slices(members)
    return [ordered[i].sop_instance_uid for i in evenly(len(ordered), k)]


def choose_frames(n_frames: int, k: int, places: Sequence[float] | None = None) -> list[int]:
    """The frame indices (0-based) of a multi-frame object to embed: ``k`` evenly along
    the slice axis when each frame's place is known, else along the stored order."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if places is not None and len(places) != n_frames:
        raise ValueError(f"{len(places)} frame places for {n_frames} frames")
    order = (
        sorted(range(n_frames), key=lambda i: (round(places[i], 4), i))
        if places is not None else list(range(n_frames))
    )
    return [order[i] for i in evenly(n_frames, k)]
