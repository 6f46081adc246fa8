"""``precedent import collection``: a labelled image folder into the node.

Each image becomes a Secondary Capture (:mod:`.secondary_capture`) stored through the
node's one ingest path with the source ``COLLECTION:<name>``; each study's labels and
caption become its report (``node.storage.study_reports``), so text search, hybrid
search and ``precedent eval --labels`` work on it. The labels are also written as an
evaluation file (``StudyInstanceUID,labels``) in ``data_dir/collections/``.

:func:`open_collection` reads and checks what to import (the folder, the labels and
captions files, the name and modality) before anything is stored, so that a request
that cannot be used fails at once; :func:`import_collection` stores it. The running
node does the import as one of its operations (:mod:`node.operations`); with the node
down, ``precedent import collection`` does it with the data folder's lock held.

Importing again changes nothing: an instance already stored is skipped, a report equal
to the one stored is not written again. A broken image is a line in the summary; the
import goes on. A full disk stops it, and so does the node's stop event (what was
stored stays; importing again finishes it).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from database import Connection
from node.errors import CollectionError, IngestError, OutOfResources
from node.image_collections.folder import Collection, CollectionItem, read_collection
from node.image_collections.secondary_capture import (
    BrokenImage,
    capture_uids,
    check_modality,
    patient_id_for,
    read_pixels,
    secondary_capture,
)
from node.storage import Ingest
from node.storage.holdings import stored_sop_instance_uids
from node.storage.sources import collection_source
from node.storage.study_reports import Report, attach_report, get_report, unique_labels

__all__ = ["CollectionImport", "ImportSummary", "collection_name", "import_collection",
           "open_collection"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: called after each image with (images done, images in all)
Progress = Callable[[int, int], None]


@dataclass
class ImportSummary:
    """What an import did."""

    collection: str
    images: int = 0
    stored: int = 0
    already: int = 0
    studies: int = 0
    reports: int = 0
    #: (file, reason) for each image or line that could not be used
    problems: list[tuple[str, str]] = field(default_factory=list)
    labels_file: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"collection": self.collection, "images": self.images, "stored": self.stored,
                "already": self.already, "studies": self.studies, "reports": self.reports,
                "problems": [{"file": f, "reason": r} for f, r in self.problems],
                "labels_file": self.labels_file}


@dataclass(frozen=True)
class CollectionImport:
    """A collection checked and read, ready to import."""

    #: the collection's name (its instances' source is ``COLLECTION:<name>``)
    name: str
    #: the modality its images carry
    modality: str
    found: Collection


def collection_name(folder: Path, name: str | None = None) -> str:
    """``name``, or the folder's, as a source label (letters, digits, ``._-``)."""
    text = _NAME.sub("_", (name or Path(folder).resolve().name).strip()).strip("_")
    if not text:
        raise CollectionError("give the collection a name with --name (letters, digits, "
                              "'.', '_' or '-')")
    return text[:48]


def _description(item: CollectionItem) -> str:
    return ", ".join(item.labels) or Path(item.relpath).stem


def _report_text(items: list[CollectionItem], labels: tuple[str, ...]) -> str | None:
    captions = [i.caption for i in items if i.caption]
    parts = list(dict.fromkeys(captions))
    if labels:
        parts.append(f"Labels: {', '.join(labels)}.")
    return "\n".join(parts) or None


def _write_labels(path: Path, labels: dict[str, tuple[str, ...]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["StudyInstanceUID", "labels"])
    for uid, values in sorted(labels.items()):
        writer.writerow([uid, "|".join(values)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def open_collection(folder: Path, *, name: str | None = None, modality: str | None = None,
                    labels_csv: Path | None = None, captions: Path | None = None,
                    patient_from: str | None = None) -> CollectionImport:
    """The collection in ``folder``, read and checked: a :class:`CollectionError` in one
    line when the folder, a file, the name or the modality cannot be used."""
    collection = collection_name(folder, name)
    modality_value = check_modality(modality)
    found = read_collection(folder, labels_csv=labels_csv, captions=captions,
                            patient_from=patient_from)
    return CollectionImport(collection, modality_value, found)


def import_collection(ingest: Ingest, conn: Connection, opened: CollectionImport, *,
                      progress: Progress | None = None,
                      stop: threading.Event | None = None) -> ImportSummary:
    """Import ``opened`` through ``ingest``, its reports written on ``conn`` (the catalog;
    see the module docstring)."""
    collection, modality_value, found = opened.name, opened.modality, opened.found
    summary = ImportSummary(collection, images=len(found.items),
                            problems=list(found.problems))
    source = collection_source(collection)
    studies: dict[str, list[CollectionItem]] = {}
    for item in found.items:
        studies.setdefault(item.study or item.relpath, []).append(item)
    eval_labels: dict[str, tuple[str, ...]] = {}
    done = 0
    for study_key, items in studies.items():
        if stop is not None and stop.is_set():
            break
        patient = next((i.patient for i in items if i.patient), None) \
            or patient_id_for(collection, study_key)
        stored_any = False
        study_uid = None
        for number, item in enumerate(sorted(items, key=lambda i: i.relpath), start=1):
            uids = capture_uids(collection, study_key, item.relpath)
            study_uid = uids.study_instance_uid
            done += 1
            if stored_sop_instance_uids(conn, [uids.sop_instance_uid]):
                summary.already += 1
                stored_any = True
            else:
                try:
                    pixels, photometric, bits = read_pixels(item.path)
                    ds = secondary_capture(pixels, photometric, bits, uids=uids,
                                           instance_number=number, modality=modality_value,
                                           patient_id=patient,
                                           description=_description(item))
                    buffer = io.BytesIO()
                    ds.save_as(buffer, enforce_file_format=True)
                    ingest.store(buffer.getvalue(), source=source, dataset=ds)
                    summary.stored += 1
                    stored_any = True
                except BrokenImage as exc:
                    summary.problems.append((item.relpath, str(exc)))
                except OutOfResources:
                    raise
                except IngestError as exc:
                    summary.problems.append((item.relpath, f"not stored: {exc}"))
            if progress is not None:
                progress(done, summary.images)
        if not stored_any or study_uid is None:
            continue
        summary.studies += 1
        labels = unique_labels(label for i in items for label in i.labels)
        eval_labels[study_uid] = labels
        text = _report_text(items, labels)
        if text is None:
            continue
        report = Report(study_uid, text, labels)
        if get_report(conn, study_uid) != report:
            attach_report(conn, report)
            summary.reports += 1
    labels_file = ingest.data_dir / "collections" / f"{collection}-labels.csv"
    _write_labels(labels_file, eval_labels)
    summary.labels_file = str(labels_file)
    log.info("collection imported name=%s images=%d stored=%d already=%d problems=%d",
             collection, summary.images, summary.stored, summary.already,
             len(summary.problems))
    return summary
