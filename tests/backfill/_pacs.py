"""The PACS for the backfill tests: an Orthanc loaded with synthetic studies over several
dates and modalities (CT, MR, CR, and CT studies with a report series), and what it
should give a backfill for a window and a modality filter."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import httpx
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

from tests._peers import ORTHANC_BIN, Orthanc, wait_for_port
from tests._synthetic import ct_instance, to_bytes

__all__ = ["PacsStudy", "load_pacs", "make_pacs_studies", "register_node", "restart_orthanc",
           "wanted_sops"]


@dataclass
class PacsStudy:
    study_instance_uid: str
    study_date: str
    #: (series UID, modality, SOP Instance UIDs)
    series: list[tuple[str, str, list[str]]] = field(default_factory=list)
    datasets: list[Dataset] = field(default_factory=list)


def _report(study: str, series: str, patient: str, date: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BasicTextSRStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = BasicTextSRStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.StudyTime = patient, "SR^X", date, "120000"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SR", 9, 1
    ds.AccessionNumber = ds.StudyID = ds.ReferringPhysicianName = ""
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    return ds


def make_pacs_studies(n: int, *, first_day: int = 0, dates: Sequence[str] | None = None,
                      seed: int = 0) -> list[PacsStudy]:
    """``n`` studies cycling CT (3 images), MR (2), CR (1), CT (2) + SR (1); study dates
    from ``dates`` (cycled) or one a day from 2023-01-01 + ``first_day``; the times spread
    over the day so that a capped day can be split by time."""
    import datetime as dt

    kinds = [("CT", 3, False), ("MR", 2, False), ("CR", 1, False), ("CT", 2, True)]
    studies = []
    for i in range(n):
        modality, count, with_report = kinds[i % len(kinds)]
        date = dates[i % len(dates)] if dates else (
            dt.date(2023, 1, 1) + dt.timedelta(days=first_day + i)).strftime("%Y%m%d")
        study_uid, series_uid = generate_uid(), generate_uid()
        patient = f"BF{seed:02d}{i:04d}"
        study = PacsStudy(study_uid, date)
        images = []
        for j in range(count):
            ds = ct_instance(study_uid=study_uid, series_uid=series_uid, patient_id=patient,
                             modality=modality, size=16, instance_number=j + 1,
                             study_date=date, seed=seed * 1000 + i * 10 + j)
            ds.StudyTime = ds.SeriesTime = f"{(i * 7) % 24:02d}{(i * 13) % 60:02d}00"
            images.append(ds)
        study.series.append((series_uid, modality, [str(d.SOPInstanceUID) for d in images]))
        study.datasets += images
        if with_report:
            sr_series = generate_uid()
            sr = _report(study_uid, sr_series, patient, date)
            study.series.append((sr_series, "SR", [str(sr.SOPInstanceUID)]))
            study.datasets.append(sr)
        studies.append(study)
    return studies


def load_pacs(orthanc: Orthanc, studies: Iterable[PacsStudy], *, parallel: int = 4) -> None:
    """Store the studies in Orthanc over its REST API (``parallel`` uploads at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    items = [to_bytes(ds) for s in studies for ds in s.datasets]
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda k: orthanc.upload(items[k::parallel]), range(parallel)))


def wanted_sops(studies: Iterable[PacsStudy], *, since: str, until: str,
                modalities: Sequence[str] = ()) -> set[str]:
    """The SOP Instance UIDs a backfill of ``since``…``until`` (YYYYMMDD) should bring:
    image series (of ``modalities`` when given) of the studies in the window."""
    out: set[str] = set()
    for study in studies:
        if not since <= study.study_date <= until:
            continue
        for _, modality, sops in study.series:
            if modality == "SR" or (modalities and modality not in modalities):
                continue
            out |= set(sops)
    return out


def register_node(orthanc: Orthanc, ae_title: str, port: int, name: str = "precedent") -> None:
    """Declare the node to Orthanc (its DicomModalities) so that C-MOVE can reach it."""
    with orthanc.client() as http:
        http.put(f"/modalities/{name}", json=[ae_title, "127.0.0.1", port]).raise_for_status()


def restart_orthanc(orthanc: Orthanc, timeout: float = 60.0) -> None:
    """Start a stopped Orthanc again on its ports, over its storage (the same PACS)."""
    with orthanc.log_file.open("ab") as log:
        orthanc.process = subprocess.Popen(
            [ORTHANC_BIN, "--no-jobs", str(orthanc.folder / "orthanc.json")],
            stdout=log, stderr=subprocess.STDOUT, cwd=orthanc.folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{orthanc.http_url}/system", timeout=1.0).status_code == 200:
                wait_for_port(orthanc.dimse_port, timeout=10)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"Orthanc did not start again; its log:\n{orthanc.log()[-3000:]}")
