"""pydicom data sets the viewer sends or reads: the image a local-only study is
searched with, and a data set as Part 10 bytes. No Qt and no network here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite

from viewer_plugin.errors import BadQuery

__all__ = ["encode_dataset", "pick_representative", "read_dataset"]


def encode_dataset(ds: Dataset) -> bytes:
    """A data set as a DICOM Part 10 file (for ``POST /similar``)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=False)
    return buffer.getvalue()


def read_dataset(data: bytes) -> Dataset:
    """Bytes of a DICOM file → Dataset."""
    return dcmread(io.BytesIO(data), force=True)


def pick_representative(datasets: Sequence[Dataset]) -> Dataset:
    """The image a local-only study is searched with: the middle image of its largest series."""
    images = [ds for ds in datasets if "PixelData" in ds]
    if not images:
        raise BadQuery("The study has no images to search with.", status=0,
                       hint="Open a study with at least one image.")
    by_series: dict[str, list[Dataset]] = {}
    for ds in images:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    largest = max(by_series.values(), key=len)
    largest.sort(key=lambda d: int(d.get("InstanceNumber") or 0))
    return largest[len(largest) // 2]
