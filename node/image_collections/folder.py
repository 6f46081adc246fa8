"""A labelled image collection on disk, read into items: one PNG or JPEG image each,
with its labels, caption, patient and study.

Labels come from the first sub-folder below the collection folder (``covid/…``,
``normal/…``), or from a CSV (``--labels``): rows ``file,label[,patient,study]``, with
or without that header (``label`` may hold several, separated by ``|``; a file may have
several rows); with a CSV, the files it lists are the collection. Captions come from a
JSON-lines file (``--captions``): ``{"file": "…", "caption": "…"}`` a line (``image`` is
taken for ``file``). A patient ID may be cut from each path with ``--patient-from
REGEX`` (its first group, or the whole match).

What cannot be used in a labels or captions file (a missing column, a bad line) is an
:class:`~node.errors.CollectionError` or a line in :attr:`Collection.problems`; a file
named there but absent is a problem line too.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import CollectionError

__all__ = ["IMAGE_SUFFIXES", "Collection", "CollectionItem", "read_collection"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_HEADER = ("file", "label", "patient", "study")


@dataclass
class CollectionItem:
    """One image of the collection."""

    #: the path below the collection folder, with ``/`` (the item's identity)
    relpath: str
    path: Path
    labels: list[str] = field(default_factory=list)
    caption: str | None = None
    patient: str | None = None
    #: images with the same study key form one study (default: each image its own)
    study: str | None = None


@dataclass
class Collection:
    """The items, and what could not be used (file, reason)."""

    folder: Path
    items: list[CollectionItem]
    problems: list[tuple[str, str]] = field(default_factory=list)


def _images(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            yield path


def _relpath(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _split_labels(text: str) -> list[str]:
    return [label.strip() for label in text.split("|") if label.strip()]


def _read_csv(folder: Path, labels_csv: Path) -> tuple[list[CollectionItem],
                                                       list[tuple[str, str]]]:
    if not labels_csv.is_file():
        raise CollectionError(f"labels file {labels_csv} does not exist")
    items: dict[str, CollectionItem] = {}
    problems: list[tuple[str, str]] = []
    with labels_csv.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if rows and rows[0] and rows[0][0].strip().lower() == "file":
        header = [c.strip().lower() for c in rows[0]]
        missing = {"file", "label"} - set(header) - ({"label"} if "labels" in header else set())
        if missing:
            raise CollectionError(f"labels file {labels_csv} lacks the column(s) "
                                  f"{sorted(missing)}: give file,label[,patient,study]")
        columns = {name: header.index(name) for name in header if name}
        if "label" not in columns:
            columns["label"] = columns["labels"]
        rows = rows[1:]
        start = 2
    else:
        columns = {name: i for i, name in enumerate(_HEADER)}
        start = 1
    for line, row in enumerate(rows, start=start):
        if not row or not any(cell.strip() for cell in row):
            continue

        def cell(name: str, row: list[str] = row) -> str:
            i = columns.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        name = cell("file").replace("\\", "/")
        if not name:
            problems.append((f"{labels_csv.name} line {line}", "no file named"))
            continue
        path = folder / name
        if not path.is_file():
            problems.append((name, f"listed in {labels_csv.name} (line {line}) but not found"))
            continue
        rel = Path(name).as_posix()
        item = items.setdefault(rel, CollectionItem(rel, path))
        item.labels += [x for x in _split_labels(cell("label")) if x not in item.labels]
        item.patient = cell("patient") or item.patient
        item.study = cell("study") or item.study
    return list(items.values()), problems


def _read_captions(captions: Path, items: dict[str, CollectionItem],
                   problems: list[tuple[str, str]]) -> None:
    if not captions.is_file():
        raise CollectionError(f"captions file {captions} does not exist")
    with captions.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
                name = str(record.get("file") or record.get("image") or "")
                caption = str(record["caption"]).strip()
            except (ValueError, KeyError, AttributeError, TypeError):
                problems.append((f"{captions.name} line {line}", 'not a JSON object with '
                                 '"file" and "caption"'))
                continue
            item = items.get(name.replace("\\", "/"))
            if item is None:
                problems.append((name or f"{captions.name} line {line}",
                                 f"captioned in {captions.name} but not in the collection"))
                continue
            item.caption = caption


def read_collection(folder: Path, *, labels_csv: Path | None = None,
                    captions: Path | None = None, patient_from: str | None = None
                    ) -> Collection:
    """The collection in ``folder`` (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CollectionError(f"{folder} is not a folder of PNG/JPEG images")
    pattern = None
    if patient_from:
        try:
            pattern = re.compile(patient_from)
        except re.error as exc:
            raise CollectionError(f"--patient-from {patient_from!r} is not a regular "
                                  f"expression: {exc}") from exc
    problems: list[tuple[str, str]] = []
    if labels_csv is not None:
        items, problems = _read_csv(folder, Path(labels_csv))
    else:
        items = []
        for path in _images(folder):
            rel = _relpath(path, folder)
            parts = rel.split("/")
            items.append(CollectionItem(rel, path, labels=[parts[0]] if len(parts) > 1 else []))
    if captions is not None:
        _read_captions(Path(captions), {i.relpath: i for i in items}, problems)
    if pattern is not None:
        for item in items:
            match = pattern.search(item.relpath)
            if match is not None and not item.patient:
                item.patient = (match.group(1) if match.groups() else match.group(0)) or None
    return Collection(folder, items, problems)
