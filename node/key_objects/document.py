"""The Key Object Selection document (KOS) of a study's similar cases (PS3.3 A.35.4).

The document: title (113000, DCM, "Of Interest") from CID 7010 (Key Object Selection
Document Titles; no code there names similar cases, "Of Interest" is the general
one), Key Object Description "Similar cases", series description "Similar cases",
patient and study of the *query* study, so that a PACS files it with the study being
read. It references the best-matching instance of each case, in rank order; those
instances belong to *other* studies (the similar cases).

Why it is built in two steps: highdicom 0.28's
:class:`~highdicom.ko.KeyObjectSelectionDocument` takes the patient and study from its
evidence and refuses evidence of more than one other study ("Key Object Selection
Documents that reference instances from multiple studies are not supported"), while
DICOM allows it: the Current Requested Procedure Evidence Sequence (PS3.3 C.17.6.2.1)
lists every referenced instance under its own study and series. So highdicom's public
constructor builds the document with the references presented as instances of the
query study (the content tree, the SR document modules, the patient and study), then
the real evidence sequence is written with pydicom, and the document is read back
through highdicom's public :meth:`~highdicom.ko.KeyObjectSelectionDocument.from_dataset`
so that :meth:`resolve_reference` answers from the evidence actually written.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, TM

from database import Connection
from node.errors import NothingToSelect, UnknownObject
from node.retrieval import Case
from node.storage import holdings

if TYPE_CHECKING:
    from highdicom.ko import KeyObjectSelectionDocument

__all__ = [
    "KOS_DESCRIPTION",
    "KOS_SERIES_NUMBER",
    "KOS_SOURCE",
    "KOS_TITLE",
    "build_similar_cases_kos",
    "kos_bytes",
]

#: CID 7010 document title
KOS_TITLE = Code("113000", "DCM", "Of Interest")
KOS_DESCRIPTION = "Similar cases"
#: ``instances.source`` of the documents the node writes itself
KOS_SOURCE = "PRECEDENT-KOS"
KOS_SERIES_NUMBER = 9100


def _study_header(conn: Connection, study_uid: str) -> Dataset:
    """The Patient and General Study modules of the query study, from the catalog."""
    row = holdings.study_record(conn, study_uid)
    if row is None:
        raise UnknownObject(f"study {study_uid} is not on this node")
    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    ds.PatientID = row["patient_id"] or ""
    ds.PatientName = row["patient_name"] or ""
    ds.PatientBirthDate = row["patient_birth_date"] or ""
    ds.PatientSex = row["patient_sex"] or ""
    ds.AccessionNumber = row["accession_number"] or ""
    ds.StudyID = row["study_id"] or ""
    ds.StudyDate = row["study_date"] or ""
    ds.StudyTime = row["study_time"] or ""
    ds.ReferringPhysicianName = row["referring_physician_name"] or ""
    texts = [str(v) for v in (ds.PatientName, ds.ReferringPhysicianName, ds.PatientID)]
    if any(not t.isascii() for t in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _referenced(conn: Connection, sop_uids: list[str]) -> dict[str, Dataset]:
    """The stored instances to reference, by SOP Instance UID (those still stored)."""
    out: dict[str, Dataset] = {}
    for row in holdings.instance_records(conn, sop_uids):
        ds = Dataset()
        ds.SOPInstanceUID = row["sop_instance_uid"]
        ds.SOPClassUID = row["sop_class_uid"]
        ds.SeriesInstanceUID = row["series_instance_uid"]
        ds.StudyInstanceUID = row["study_instance_uid"]
        if row["rows"] and row["columns"]:
            ds.Rows, ds.Columns = int(row["rows"]), int(row["columns"])
        out[row["sop_instance_uid"]] = ds
    return out


def _evidence_sequence(referenced: list[Dataset]) -> list[Dataset]:
    """Current Requested Procedure Evidence Sequence items: study > series > SOP."""
    by_study: dict[str, dict[str, list[Dataset]]] = defaultdict(lambda: defaultdict(list))
    for ds in referenced:
        by_study[ds.StudyInstanceUID][ds.SeriesInstanceUID].append(ds)
    studies = []
    for study_uid, series_map in by_study.items():
        study_item = Dataset()
        study_item.StudyInstanceUID = study_uid
        series_items = []
        for series_uid, instances in series_map.items():
            series_item = Dataset()
            series_item.SeriesInstanceUID = series_uid
            sops = []
            for ds in instances:
                sop = Dataset()
                sop.ReferencedSOPClassUID = ds.SOPClassUID
                sop.ReferencedSOPInstanceUID = ds.SOPInstanceUID
                sops.append(sop)
            series_item.ReferencedSOPSequence = sops
            series_items.append(series_item)
        study_item.ReferencedSeriesSequence = series_items
        studies.append(study_item)
    return studies


def build_similar_cases_kos(
    conn: Connection,
    *,
    study_instance_uid: str,
    cases: list[Case],
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    manufacturer: str = "Precedent",
) -> KeyObjectSelectionDocument:
    """A KOS in the query study that references the best instance of each case."""
    from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument

    header = _study_header(conn, study_instance_uid)
    best = [c.best_instance_uid for c in cases if c.best_instance_uid]
    found = _referenced(conn, list(dict.fromkeys(best)))
    referenced = [found[uid] for uid in dict.fromkeys(best) if uid in found]
    if not referenced:
        raise NothingToSelect("no similar case has an instance to reference")
    content = KeyObjectSelection(document_title=KOS_TITLE, referenced_objects=referenced,
                                 description=KOS_DESCRIPTION)
    # highdicom takes the patient and study from the evidence and accepts one study:
    # give it the references dressed as the query study (see the module docstring) ...
    dressed = []
    for ds in referenced:
        item = Dataset()
        item.update(header)
        item.SOPClassUID, item.SOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        item.SeriesInstanceUID = ds.SeriesInstanceUID
        dressed.append(item)
    built = KeyObjectSelectionDocument(
        evidence=dressed,
        content=content,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=KOS_SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer=manufacturer,
    )
    # ... then write the real evidence, each instance under its own study and series
    built.CurrentRequestedProcedureEvidenceSequence = _evidence_sequence(referenced)
    built.SeriesDescription = KOS_DESCRIPTION
    now = time.localtime()
    built.ContentDate = DA(time.strftime("%Y%m%d", now))
    built.ContentTime = TM(time.strftime("%H%M%S", now))
    # read back through highdicom, so that its references come from that evidence
    return KeyObjectSelectionDocument.from_dataset(built)


def kos_bytes(kos: Dataset) -> bytes:
    """The document as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, kos, enforce_file_format=True)
    return buffer.getvalue()
