"""Volumes through the worker, on real files with the tiny model: a series is embedded by
the slices chosen evenly along its axis, the same whatever the arrival order; the others
are ``not_sampled`` and never decoded; a late or deleted slice re-decides the series; a
multi-frame object is embedded by its chosen frames; objects that are not cases are
skipped by SOP class."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset

from database import connect, transaction
from indexer import LevelValues, decisions, ensure_schema, queue, slices
from indexer.embedder import Embedder
from indexer.image_plane import slice_header
from indexer.index import IndexSet, delete_instances
from indexer.normalise import NormalisedImage, normalise_dataset
from indexer.sampling import VolumeSampling, choose_frames, choose_slices
from indexer.stages import shrink
from indexer.worker import Worker
from tests.conftest import BACKENDS, catalog_for
from tests.indexer._dicom import ct_pattern, grey_dataset, pydicom_data_files, write

STUDY, SERIES = "1.2.840.99.1", "1.2.840.99.1.1"
OBLIQUE = [0.8, 0.6, 0.0, 0.0, 0.0, -1.0]  # normal (-0.6, 0.8, 0)

#: the catalog of a data folder (SQLite: its catalog.sqlite; PostgreSQL: a fresh database)
CatalogOf = Callable[[Path], str | Path]


@pytest.fixture(params=BACKENDS)
def cat(request: pytest.FixtureRequest) -> CatalogOf:
    """Each data folder of a test gets its own catalog, on one back end."""
    made: dict[Path, str | Path] = {}

    def of(data: Path) -> str | Path:
        if data not in made:
            url = catalog_for(request, str(request.param))
            made[data] = data / "catalog.sqlite" if url is None else url
        return made[data]

    return of


def _slice(i: int, *, series: str = SERIES, corrupt: bool = False) -> FileDataset:
    """Slice ``i`` of an oblique CT series: 5 mm apart along the normal; instance numbers
    run the other way, so only the position orders correctly."""
    place = 5.0 * i
    ds = grey_dataset(
        ct_pattern(seed=i, size=32, kind=i % 4), bits_stored=12,
        sop_uid=f"{series}.{i}", study_uid=STUDY, series_uid=series, patient_id="PV",
        RescaleIntercept=-1024, RescaleSlope=1,
        ImagePositionPatient=[-0.6 * place + 1.0, 0.8 * place - 2.0, 7.0],
        ImageOrientationPatient=OBLIQUE, InstanceNumber=1000 - i,
    )
    if corrupt:  # decoding this slice would fail: it must never be decoded
        ds.PixelData = ds.PixelData[:100]
    return ds


def _queue(catalog: str | Path, data: Path, datasets: list[FileDataset], *, at: float) -> None:
    conn = connect(catalog)
    ensure_schema(conn)
    with transaction(conn):
        for ds in datasets:
            rel = f"dicom/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
            write(ds, data / rel)
            queue.enqueue(conn, str(ds.SOPInstanceUID), rel, now=at)
    conn.close()


def _worker(catalog: str | Path, data: Path, embedder: Embedder, sampling: VolumeSampling,
            **kw: object) -> Worker:
    index_set = IndexSet.open(catalog=catalog, index_dir=data / "index",
                              model_id=embedder.identity, dim=embedder.dim)
    options: dict[str, object] = {"batch_size": 8, "backoff_s": 0.0, **kw}
    return Worker(catalog=catalog, data_dir=data, embedder=embedder,
                  index_set=index_set, sampling=sampling, **options)  # type: ignore[arg-type]


def _drain(worker: Worker) -> queue.QueueCounts:
    conn = connect(worker.catalog)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if worker.run_once() == 0 and queue.counts(conn).waiting == 0:
            return queue.counts(conn)
    raise TimeoutError(f"not drained: {queue.counts(conn)}")


def _embedded(ix: IndexSet, uids: list[str]) -> set[str]:
    return {u for u in uids if ix.get_vector(LevelValues.INSTANCE, u) is not None}


def test_the_sample_is_the_same_whatever_the_arrival_order(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder
) -> None:
    n, k = 37, 5
    headers = [slice_header(_slice(i)) for i in range(n)]
    sample = choose_slices(headers, k)
    uids = [h.sop_instance_uid for h in headers]
    chosen = {int(u.rsplit(".", 1)[1]) for u in sample}
    slices_ = [_slice(i, corrupt=i not in chosen) for i in range(n)]
    rng = random.Random(3)
    shuffled = slices_[:]
    rng.shuffle(shuffled)
    series_vectors = []
    for name, order in (("sorted", slices_), ("reversed", slices_[::-1]), ("shuffled", shuffled)):
        data = tmp_path / name
        if name == "shuffled":  # half now, half later; complete when the study is stable
            _queue(cat(data), data, order[:20], at=time.time())
            worker = _worker(cat(data), data, tiny_embedder, VolumeSampling(k, series_quiet_s=3600))
            worker.run_once()
            _queue(cat(data), data, order[20:], at=time.time())
            worker.run_once()
            # nothing is embedded before the series is complete
            assert queue.counts(connect(cat(data))).pending == n
            conn = connect(cat(data))
            with transaction(conn):
                slices.study_complete(conn, [STUDY], time.time())  # the stable event
        else:  # every slice there at once, a series complete at once
            _queue(cat(data), data, order, at=time.time() - 1)
            worker = _worker(cat(data), data, tiny_embedder, VolumeSampling(k, series_quiet_s=0))
        counts = _drain(worker)
        ix = worker.index_set
        assert (counts.done, counts.not_sampled, counts.failed) == (k, n - k, 0), name
        assert counts.not_sampled_reasons == {decisions.not_sampled_reason(k): n - k}
        assert _embedded(ix, uids) == set(sample), name
        assert ix.count("instance") == k and ix.count("series") == 1
        vec = ix.get_vector(LevelValues.SERIES, SERIES)
        assert vec is not None
        members = np.stack([ix.get_vector(LevelValues.INSTANCE, u) for u in sample])
        mean = members.mean(axis=0)
        np.testing.assert_allclose(vec, mean / np.linalg.norm(mean), atol=1e-5)
        series_vectors.append(vec)
        worker.close()
    for vec in series_vectors[1:]:
        np.testing.assert_allclose(vec, series_vectors[0], atol=1e-6)


def test_a_study_stable_before_the_worker_looked_at_its_slices_is_complete(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder
) -> None:
    datasets = [_slice(i) for i in range(10)]
    _queue(cat(tmp_path), tmp_path, datasets, at=time.time() - 1)
    conn = connect(cat(tmp_path))
    with transaction(conn):  # the node's stable event, while the worker is busy elsewhere
        slices.study_complete(conn, [STUDY], time.time())
    worker = _worker(cat(tmp_path), tmp_path, tiny_embedder, VolumeSampling(3, series_quiet_s=3600))
    counts = _drain(worker)  # no hour of quiet waited for
    assert (counts.done, counts.not_sampled) == (3, 7)
    late = _slice(10)  # but a slice after the event is not covered by it
    _queue(cat(tmp_path), tmp_path, [late], at=time.time())
    worker.run_once()
    assert queue.counts(conn).pending == 1
    with transaction(conn):
        slices.study_complete(conn, [STUDY], time.time())  # the next stable event
    assert _drain(worker).done == 3
    worker.close()


def test_a_late_slice_re_decides_its_series(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder
) -> None:
    n, k = 20, 4
    first = [_slice(i) for i in range(n)]
    _queue(cat(tmp_path), tmp_path, first, at=time.time() - 1)
    worker = _worker(cat(tmp_path), tmp_path, tiny_embedder, VolumeSampling(k, series_quiet_s=0))
    _drain(worker)
    ix = worker.index_set
    before = choose_slices([slice_header(ds) for ds in first], k)
    assert _embedded(ix, [str(ds.SOPInstanceUID) for ds in first]) == set(before)

    late = _slice(n)  # one more slice, at the far end of the axis
    _queue(cat(tmp_path), tmp_path, [late], at=time.time())
    counts = _drain(worker)
    everything = [*first, late]
    after = choose_slices([slice_header(ds) for ds in everything], k)
    assert after != before
    assert _embedded(ix, [str(ds.SOPInstanceUID) for ds in everything]) == set(after)
    assert (counts.done, counts.not_sampled) == (k, n + 1 - k)
    states = queue.states_of(connect(cat(tmp_path)), before)
    assert all(states[u] is queue.WorkStateValues.NOT_SAMPLED for u in set(before) - set(after))
    assert ix.count("instance") == k  # the in-memory index in step
    vec = ix.get_vector(LevelValues.SERIES, SERIES)
    mean = np.stack([ix.get_vector(LevelValues.INSTANCE, u) for u in after]).mean(axis=0)
    np.testing.assert_allclose(vec, mean / np.linalg.norm(mean), atol=1e-5)
    worker.close()


def test_deleting_a_chosen_slice_re_decides_its_series(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder
) -> None:
    n, k = 15, 3
    datasets = [_slice(i) for i in range(n)]
    _queue(cat(tmp_path), tmp_path, datasets, at=time.time() - 1)
    worker = _worker(cat(tmp_path), tmp_path, tiny_embedder, VolumeSampling(k, series_quiet_s=0))
    _drain(worker)
    ix = worker.index_set
    gone = choose_slices([slice_header(ds) for ds in datasets], k)[1]
    conn = ix.connection()
    with transaction(conn):  # as the node's deletion does
        queue.delete(conn, [gone])
        changes = delete_instances(conn, [gone])
    ix.apply(changes)
    counts = _drain(worker)
    left = [ds for ds in datasets if ds.SOPInstanceUID != gone]
    expected = choose_slices([slice_header(ds) for ds in left], k)
    assert _embedded(ix, [str(ds.SOPInstanceUID) for ds in left]) == set(expected)
    assert (counts.done, counts.not_sampled, counts.total) == (k, n - 1 - k, n - 1)
    worker.close()


def test_a_rebuild_samples_again_with_the_settings_of_now(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder
) -> None:
    datasets = [_slice(i) for i in range(18)]
    headers = [slice_header(ds) for ds in datasets]
    uids = [h.sop_instance_uid for h in headers]
    _queue(cat(tmp_path), tmp_path, datasets, at=time.time() - 1)
    worker = _worker(cat(tmp_path), tmp_path, tiny_embedder, VolumeSampling(3, series_quiet_s=0))
    _drain(worker)
    worker.close()
    for k in (3, 6):  # the same settings follow the recorded sample; new ones decide again
        ix = IndexSet.open(catalog=cat(tmp_path), index_dir=tmp_path / "index")
        ix.switch_model(tiny_embedder.identity, tiny_embedder.dim)  # `index rebuild`
        again = _worker(cat(tmp_path), tmp_path, tiny_embedder, VolumeSampling(k, series_quiet_s=0))
        counts = _drain(again)
        assert (counts.done, counts.not_sampled) == (k, 18 - k)
        assert _embedded(again.index_set, uids) == set(choose_slices(headers, k))
        again.close()


def test_a_decision_interrupted_by_a_crash_is_taken_again(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder
) -> None:
    n, k = 12, 3
    datasets = [_slice(i) for i in range(n)]
    _queue(cat(tmp_path), tmp_path, datasets, at=time.time() - 1)
    sampling = VolumeSampling(k, series_quiet_s=0)
    worker = _worker(cat(tmp_path), tmp_path, tiny_embedder, sampling)
    conn = connect(cat(tmp_path))
    items = queue.claim(conn, 64)  # what the worker does first, by hand: triage, admit
    with transaction(conn):
        slices.admit(conn, [(slice_header(ds), it.enqueued_at)
                            for ds, it in zip(datasets, items, strict=True)], sampling.k)
        queue.hold(conn, [it.sop_instance_uid for it in items], decisions.HELD_REASON)
    [due] = slices.due_series(conn, now=time.time(), quiet_s=0, oldest_unsorted=None)
    decision = decisions.start(conn, due, sampling, now=time.time())
    assert len(decision.taken) == k and queue.counts(conn).in_progress == k
    worker.close()  # ... and the process dies before the embedding is committed

    again = _worker(cat(tmp_path), tmp_path, tiny_embedder, sampling)  # in progress back to pending
    counts = _drain(again)
    expected = choose_slices([slice_header(ds) for ds in datasets], k)
    assert (counts.done, counts.not_sampled) == (k, n - k)
    assert _embedded(again.index_set, [str(ds.SOPInstanceUID) for ds in datasets]) == set(expected)
    again.close()


def _enhanced(n: int, places: list[float] | None) -> FileDataset:
    """A multi-frame CT whose frames differ, with per-frame plane positions (or none)."""
    frames = np.stack([ct_pattern(seed=40 + f, size=32, kind=f % 4) for f in range(n)])
    ds = grey_dataset(frames, bits_stored=12, sop_uid="1.2.840.99.2.1", study_uid="1.2.840.99",
                      series_uid="1.2.840.99.2", RescaleIntercept=-1024, RescaleSlope=1)
    if places is not None:
        shared, orientation = Dataset(), Dataset()
        orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        shared.PlaneOrientationSequence = [orientation]
        ds.SharedFunctionalGroupsSequence = [shared]
        per_frame = []
        for z in places:
            item, position = Dataset(), Dataset()
            position.ImagePositionPatient = [0.0, 0.0, z]
            item.PlanePositionSequence = [position]
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = per_frame
    return ds


@pytest.mark.parametrize("with_positions", [True, False])
def test_a_multi_frame_object_is_embedded_by_its_chosen_frames(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder, with_positions: bool
) -> None:
    n, k = 9, 3
    places = [float(z) for z in random.Random(5).sample(range(0, 90, 10), n)]
    ds = _enhanced(n, places if with_positions else None)
    _queue(cat(tmp_path), tmp_path, [ds], at=time.time())
    worker = _worker(cat(tmp_path), tmp_path, tiny_embedder, VolumeSampling(k, series_quiet_s=3600))
    counts = _drain(worker)  # no waiting: the object holds its whole volume
    assert counts.done == 1
    frames = choose_frames(n, k, places if with_positions else None)
    if with_positions:  # along the plane positions, not the stored order
        assert frames == [places.index(z) for z in sorted(places)][1::3]
    else:
        assert frames == [1, 4, 7]
    pictures = []
    for f in frames:
        image = normalise_dataset(ds, f)
        assert isinstance(image, NormalisedImage) and image.frame_index == f
        pictures.append(shrink(image.pixels, tiny_embedder.image_size, grey=True,
                               crop=tiny_embedder.crops_to_square))
    mean = tiny_embedder.embed_images(pictures).mean(axis=0)
    stored = worker.index_set.get_vector(LevelValues.INSTANCE, "1.2.840.99.2.1")
    np.testing.assert_allclose(stored, mean / np.linalg.norm(mean), atol=1e-5)
    middle = tiny_embedder.embed_images([pictures[1]])[0]
    assert float(stored @ middle) < 0.9999  # not the middle frame alone any more
    worker.close()


def test_objects_that_are_not_cases_are_skipped_by_sop_class(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder
) -> None:
    files = {p.name: p for p in pydicom_data_files()}
    chosen = ["liver.dcm", "rtdose.dcm", "reportsi.dcm", "RG1_UNCR.dcm"]  # SEG, RT, SR, CR
    conn = connect(cat(tmp_path))
    ensure_schema(conn)
    with transaction(conn):
        for i, name in enumerate(chosen):
            rel = f"dicom/{name}"
            (tmp_path / "dicom").mkdir(exist_ok=True)
            (tmp_path / rel).write_bytes(files[name].read_bytes())
            queue.enqueue(conn, f"9.{i}", rel)
    worker = _worker(cat(tmp_path), tmp_path, tiny_embedder, VolumeSampling())
    counts = _drain(worker)
    assert (counts.done, counts.skipped, counts.failed) == (1, 3, 0)
    classes = {pydicom.dcmread(files[n], stop_before_pixels=True).SOPClassUID for n in chosen[:3]}
    reasons = set(counts.skipped_reasons)
    for uid in classes:
        assert any(r.startswith("not an image for retrieval (SOP class ") and r.endswith(
            f"{uid})") for r in reasons), (uid, reasons)
    assert any("Segmentation Storage" in r for r in reasons)
    assert worker.index_set.count("instance") == 1  # the radiograph only
    worker.close()


def test_every_slice_when_sampling_is_off(
    tmp_path: Path, cat: CatalogOf, tiny_embedder: Embedder
) -> None:
    datasets = [_slice(i) for i in range(10)]
    _queue(cat(tmp_path), tmp_path, datasets, at=time.time())
    worker = _worker(cat(tmp_path), tmp_path, tiny_embedder, VolumeSampling.every_slice())
    assert worker.run_once() == 8 and worker.run_once() == 2  # embedded as they come
    counts = queue.counts(connect(cat(tmp_path)))
    assert (counts.done, counts.not_sampled, counts.pending) == (10, 0, 0)
    worker.close()
