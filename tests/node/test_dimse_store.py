"""C-STORE and C-ECHO against a real node, driven by dcmtk and pynetdicom as peers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

from tests._peers import echoscu, storescu, test_files
from tests._synthetic import ct_instance, write_files
from tests.conftest import BACKENDS, catalog_for


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    """The catalog of every node these tests start: SQLite, then PostgreSQL."""
    return catalog_for(request, request.param)


def _catalogued(node) -> set[str]:  # type: ignore[no-untyped-def]
    rows = node.services.connections.get().execute("SELECT sop_instance_uid FROM instances")
    return {r[0] for r in rows}


def _queued(node) -> dict[str, int]:  # type: ignore[no-untyped-def]
    rows = node.services.connections.get().execute(
        "SELECT sop_instance_uid, count(*) FROM work GROUP BY sop_instance_uid")
    return {r[0]: r[1] for r in rows}


def test_every_pydicom_test_file_is_stored_and_catalogued(make_node, tmp_path: Path) -> None:
    node = make_node(no_model=True)
    files = test_files()
    assert len(files) > 50
    result = storescu(node.dimse_port, files, called=node.ae_title, extra=["--no-halt"])
    unreadable = {line.split("Bad DICOM file: ")[1].split(":")[0]
                  for line in result.stderr.splitlines() if "Bad DICOM file: " in line}
    assert len(unreadable) < 5, unreadable  # dcmtk itself cannot read a few broken files
    expected = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                for f in files if str(f) not in unreadable}
    stored = _catalogued(node)
    missing = expected - stored
    assert not missing, f"{len(missing)} not stored; storescu said:\n{result.stderr[-3000:]}"
    queued = _queued(node)
    assert set(queued) == stored and set(queued.values()) == {1}


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "SC_rgb_rle.dcm",
                                  "MR_small_bigendian.dcm"])
def test_bytes_are_kept_exactly_as_received(make_node, name: str) -> None:
    """No transcoding: the data set bytes on disk are the bytes the sender sent."""
    node = make_node(no_model=True)
    path = next(f for f in test_files() if f.name == name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's own bytes, unparsed
    try:
        assoc = _assoc_with(node, ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assert assoc.send_c_store(path).Status == 0x0000
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
    row = node.services.connections.get().execute(
        "SELECT path, transfer_syntax_uid FROM instances WHERE sop_instance_uid=?",
        (str(ds.SOPInstanceUID),)).fetchone()
    assert row[1] == ds.file_meta.TransferSyntaxUID
    original = path.read_bytes()
    body = original[_meta_end(original):]
    kept = (node.data_dir / row[0]).read_bytes()
    assert kept.endswith(body)


def _meta_end(raw: bytes) -> int:
    import io

    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = io.BytesIO(raw)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    return fp.tell()


def _assoc_with(node, sop_class: str, syntax: str):  # type: ignore[no-untyped-def]
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate("127.0.0.1", node.dimse_port, ae_title=node.ae_title)
    assert assoc.is_established
    return assoc


def test_echo_from_unknown_caller_is_rejected_with_reason(make_node) -> None:
    node = make_node(no_model=True, node={"allow_any_source": False})
    result = echoscu(node.dimse_port, called=node.ae_title, calling="STRANGER")
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr + result.stdout
    # a configured source is accepted, the node kept serving
    from node.storage import aes

    aes.add_source(node.services.connections.get(), "ECHOSCU")
    assert echoscu(node.dimse_port, called=node.ae_title).returncode == 0


def test_wrong_called_ae_title_is_rejected(make_node) -> None:
    node = make_node(no_model=True)
    result = echoscu(node.dimse_port, called="NOTTHENODE")
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr + result.stdout


def test_source_bound_to_another_host_is_rejected(make_node) -> None:
    from node.storage import aes

    node = make_node(no_model=True, node={"allow_any_source": False})
    aes.add_source(node.services.connections.get(), "ECHOSCU", host="127.0.0.2")
    result = echoscu(node.dimse_port, called=node.ae_title)
    assert "Calling AE Title Not Recognized" in result.stderr + result.stdout


def test_permissions_are_per_service(make_node, tmp_path: Path) -> None:
    from node.storage import aes

    node = make_node(no_model=True, node={"allow_any_source": False})
    aes.add_source(node.services.connections.get(), "STORESCU",
                   permissions=aes.parse_permissions("echo"))
    ds = ct_instance(study_uid="1.2.3.4", series_uid="1.2.3.4.5", patient_id="P1")
    files = write_files([ds], tmp_path / "in")
    result = storescu(node.dimse_port, files, called=node.ae_title)
    assert "0x0124" in result.stderr + result.stdout or result.returncode != 0
    assert _catalogued(node) == set()


def _assoc(node, contexts):  # type: ignore[no-untyped-def]
    ae = AE(ae_title="TESTSCU")
    for c in contexts:
        ae.add_requested_context(c)
    assoc = ae.associate("127.0.0.1", node.dimse_port, ae_title=node.ae_title)
    assert assoc.is_established
    return assoc


def test_bad_instances_get_clear_statuses_and_node_keeps_serving(make_node) -> None:
    node = make_node(no_model=True)
    assoc = _assoc(node, [CTImageStorage, MRImageStorage, Verification])
    try:
        good = ct_instance(study_uid="1.2.840.1", series_uid="1.2.840.1.1", patient_id="P1")

        missing = ct_instance(study_uid="1.2.840.2", series_uid="1.2.840.2.1", patient_id="P2")
        del missing.StudyInstanceUID
        status = assoc.send_c_store(missing)
        assert status.Status == 0xC210
        assert "Study Instance UID (0020,000D) is missing" in status.ErrorComment

        traversal = ct_instance(study_uid="1.2.840.3", series_uid="1.2.840.3.1", patient_id="P3")
        traversal.SeriesInstanceUID = "../../etc"
        status = assoc.send_c_store(traversal)
        assert status.Status == 0xC210
        assert "not a valid UID" in status.ErrorComment

        assert assoc.send_c_store(good).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert _catalogued(node) == {str(good.SOPInstanceUID)}


def test_data_set_not_matching_its_sop_class_gets_a900(make_node, tmp_path: Path) -> None:
    node = make_node(no_model=True)
    mismatch = ct_instance(study_uid="1.2.840.4", series_uid="1.2.840.4.1", patient_id="P4")
    mismatch.SOPClassUID = MRImageStorage  # but announced as CT
    status = _send_announced_as(node, mismatch, CTImageStorage)
    assert status.Status == 0xA900
    assert "differs" in status.ErrorComment
    assert _catalogued(node) == set()


def _send_announced_as(node, ds: Dataset, sop_class: str):  # type: ignore[no-untyped-def]
    """Send ``ds`` in a C-STORE request that announces it as ``sop_class``."""
    from io import BytesIO

    from pynetdicom.dimse_primitives import C_STORE

    assoc = _assoc_with(node, sop_class, "1.2.840.10008.1.2")
    context = assoc.accepted_contexts[0]
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    write_dataset(body, ds)
    req = C_STORE()
    req.MessageID, req.Priority = 1, 2
    req.AffectedSOPClassUID = sop_class
    req.AffectedSOPInstanceUID = ds.SOPInstanceUID
    req.DataSet = BytesIO(body.getvalue())
    assoc._reactor_checkpoint.clear()  # as send_c_store does: we read the response
    assoc.dimse.send_msg(req, context.context_id)
    _, rsp = assoc.dimse.get_msg(block=True)
    assoc._reactor_checkpoint.set()
    assoc.release()
    return rsp


def test_undecodable_data_set_is_refused(make_node, tmp_path: Path) -> None:
    node = make_node(no_model=True)
    good = ct_instance(study_uid="1.2.840.9", series_uid="1.2.840.9.1", patient_id="P9")
    path = write_files([good], tmp_path / "bad")[0]
    raw = path.read_bytes()
    meta_end = _meta_end(raw)
    # an element claiming 65535 bytes where a handful follow
    path.write_bytes(raw[:meta_end] + b"\x08\x00\x16\x00UI\xff\xffgarbage" + b"\x00" * 64)
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = _assoc_with(node, CTImageStorage, good.file_meta.TransferSyntaxUID)
        status = assoc.send_c_store(path)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
    assert status.Status == 0xC210
    assert "cannot be decoded" in status.ErrorComment or "missing" in status.ErrorComment
    assert _catalogued(node) == set()
    assert echoscu(node.dimse_port, called=node.ae_title).returncode == 0


def test_duplicate_keeps_first_and_never_doubles(make_node, tmp_path: Path) -> None:
    node = make_node(no_model=True)
    ds = ct_instance(study_uid="1.2.840.7", series_uid="1.2.840.7.1", patient_id="P7")
    first = write_files([ds], tmp_path / "a")
    ds.StudyDescription = "changed"
    second = write_files([ds], tmp_path / "b")
    assert storescu(node.dimse_port, first, called=node.ae_title).returncode == 0
    assert storescu(node.dimse_port, second, called=node.ae_title).returncode == 0
    conn = node.services.connections.get()
    assert conn.execute("SELECT count(*) FROM instances").fetchone()[0] == 1
    path = conn.execute("SELECT path FROM instances").fetchone()[0]
    assert pydicom.dcmread(node.data_dir / path).StudyDescription == "CT chest normal"
    assert _queued(node) == {str(ds.SOPInstanceUID): 1}


def test_replace_policy_overwrites_and_requeues(make_node, tmp_path: Path) -> None:
    node = make_node(no_model=True, node={"duplicate_policy": "replace"})
    ds = ct_instance(study_uid="1.2.840.8", series_uid="1.2.840.8.1", patient_id="P8")
    storescu(node.dimse_port, write_files([ds], tmp_path / "a"), called=node.ae_title)
    ds.StudyDescription = "changed"
    storescu(node.dimse_port, write_files([ds], tmp_path / "b"), called=node.ae_title)
    conn = node.services.connections.get()
    path = conn.execute("SELECT path FROM instances").fetchone()[0]
    assert pydicom.dcmread(node.data_dir / path).StudyDescription == "changed"
    assert conn.execute("SELECT count(*) FROM work").fetchone()[0] == 1


def test_below_free_space_reserve_refuses_association(make_node) -> None:
    node = make_node(no_model=True, node={"free_space_reserve_mb": 10**9})
    result = echoscu(node.dimse_port, called=node.ae_title)
    assert result.returncode != 0
    assert "Temporary Congestion" in result.stderr + result.stdout or \
        "rejected" in (result.stderr + result.stdout).lower()


def test_full_disk_answers_out_of_resources(make_node, tmp_path: Path) -> None:
    """The reserve is checked per instance too: a store that would cross it gets 0xA700."""
    node = make_node(no_model=True)
    # switch the reserve on after the association is accepted
    node.services.ingest.reserve_bytes = 10**15
    assoc = _assoc(node, [CTImageStorage])
    ds = ct_instance(study_uid="1.2.840.10", series_uid="1.2.840.10.1", patient_id="P10")
    status = assoc.send_c_store(ds)
    assoc.release()
    assert status.Status == 0xA700
    assert "disk" in status.ErrorComment
    assert _catalogued(node) == set()
    assert not list((node.data_dir / "tmp").glob("*.part"))


def test_find_and_get_refused_without_permission(make_node) -> None:
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelFind as FIND,
    )
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelGet as GET,
    )

    from node.storage import aes

    node = make_node(no_model=True, node={"allow_any_source": False})
    aes.add_source(node.services.connections.get(), "TESTSCU",
                   permissions=aes.parse_permissions("echo"))
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", "1.2.3"
    assoc = _assoc(node, [FIND, GET, Verification])
    try:
        (status, _), = list(assoc.send_c_find(query, FIND))
        assert status.Status == 0x0124 and "may not query" in status.ErrorComment
        statuses = [s for s, _ in assoc.send_c_get(query, GET)]
        assert statuses[-1].Status == 0x0124
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


#: set in a re-run inside a mount namespace of its own: where the small file system is
_SMALL_FS = "PRECEDENT_TEST_SMALL_FS"
_FULL_DISK_TEST = "tests/node/test_dimse_store.py::test_a_really_full_disk_answers_a700_and_keeps_what_it_acknowledged"


def _mount_small_fs(mount: Path) -> str | None:
    """Mount a 4 MiB tmpfs on ``mount``; None when done, else why it could not be."""
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    return None if result.returncode == 0 else result.stderr.strip() or "mount failed"


def _rerun_in_own_mount_namespace(mount: Path, basetemp: Path) -> subprocess.CompletedProcess[str] | str:
    """Without mount rights (not root, or a container without CAP_SYS_ADMIN), a user and
    mount namespace of our own (``unshare -Urm``) may still mount a tmpfs: run this test
    again in one, on a tmpfs mounted there. The result, or why it cannot be done."""
    import shutil
    import sys

    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    mount_cmd = 'mount -t tmpfs -o size=4m tmpfs "$1"'
    probe = subprocess.run(["unshare", "-Urm", "--propagation", "private", "sh", "-c", mount_cmd,
                            "sh", str(mount)], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -Urm cannot mount either: {probe.stderr.strip()}"
    return subprocess.run(
        ["unshare", "-Urm", "--propagation", "private", "sh", "-c",
         mount_cmd + ' && shift && exec "$@"', "sh", str(mount),
         sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--basetemp={basetemp}", _FULL_DISK_TEST],
        capture_output=True, text=True, timeout=240, env={**os.environ, _SMALL_FS: str(mount)},
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def test_a_really_full_disk_answers_a700_and_keeps_what_it_acknowledged(
        make_node, tmp_path: Path) -> None:
    """The data folder on a 4 MiB file system: stores succeed until it is full, then
    0xA700; every acknowledged instance is catalogued and readable; echo still works.

    The file system is a tmpfs: mounted here when this process may (root), else in a mount
    namespace of its own where the test runs again. Where neither works it skips, except
    under CI (``CI`` set), where it fails: CI must run it."""
    premounted = os.environ.get(_SMALL_FS)
    if premounted:  # the re-run, inside the namespace that mounted it
        _fill_the_disk(make_node, Path(premounted))
        return
    mount = tmp_path / "small"
    mount.mkdir()
    why = _mount_small_fs(mount)
    if why is None:
        try:
            _fill_the_disk(make_node, mount)
        finally:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        return
    rerun = _rerun_in_own_mount_namespace(mount, tmp_path / "rerun")
    if isinstance(rerun, str):
        message = f"cannot mount a small file system here ({why}; {rerun})"
        if _in_ci():
            pytest.fail(message + ": CI must run this test (run it as root, or allow "
                        "unprivileged user namespaces)")
        pytest.skip(message)
    assert rerun.returncode == 0 and "1 passed" in rerun.stdout, rerun.stdout[-4000:] + rerun.stderr[-2000:]


def _fill_the_disk(make_node, mount: Path) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True, data_dir=mount / "data")
    assoc = _assoc(node, [CTImageStorage])
    statuses = {}
    for i in range(12):  # 12 × 512 KiB > 4 MiB
        ds = ct_instance(study_uid="1.2.840.11", series_uid="1.2.840.11.1",
                         patient_id="PFULL", instance_number=i, size=512, seed=i)
        statuses[str(ds.SOPInstanceUID)] = assoc.send_c_store(ds)
    assoc.release()
    codes = [s.Status for s in statuses.values()]
    assert 0x0000 in codes and 0xA700 in codes
    assert all(c in (0x0000, 0xA700) for c in codes)
    full = next(s for s in statuses.values() if s.Status == 0xA700)
    assert "disk" in full.ErrorComment
    acknowledged = {uid for uid, s in statuses.items() if s.Status == 0x0000}
    rows = dict(node.services.connections.get().execute(
        "SELECT sop_instance_uid, path FROM instances").fetchall())
    assert set(rows) == acknowledged
    for path in rows.values():
        assert pydicom.dcmread(node.data_dir / path).Rows == 512
    assert echoscu(node.dimse_port, called=node.ae_title).returncode == 0
    node.stop()


# --------------------------------------------------------------------------- data sets that are not whole


def _nothing_kept(node) -> None:  # type: ignore[no-untyped-def]
    """No row, no queue entry, no file, no part left behind."""
    assert _catalogued(node) == set()
    assert _queued(node) == {}
    assert not [p for p in (node.data_dir / "dicom").rglob("*") if p.is_file()] \
        if (node.data_dir / "dicom").exists() else True
    assert not list((node.data_dir / "tmp").glob("*.part"))


def _store_response(node, path: Path) -> str:  # type: ignore[no-untyped-def]
    """storescu's account (-d: with the response's Error Comment) of sending ``path``."""
    result = storescu(node.dimse_port, [path], called=node.ae_title, extra=["-d"])
    said = result.stdout + result.stderr
    assert "Received Store Response" in said, said[-2000:]
    return said


def _mr_small_file(folder: Path, ds: Dataset) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mr.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(("declared", "present"), [(8192, 5192), (0x7FFFFFF0, 8192)])
def test_pixel_data_cut_short_is_refused(make_node, declared: int, present: int) -> None:
    """MR_small.dcm whose PixelData length field says more than the bytes that follow
    (the data set ends there): refused, nothing kept, the association goes on."""
    from tests.node._senders import mr_small, send_raw_c_store, with_pixel_length

    node = make_node(no_model=True)
    ds = mr_small()
    status = send_raw_c_store(node.dimse_port, node.ae_title, sop_class=ds.SOPClassUID,
                              sop_instance=ds.SOPInstanceUID,
                              syntax=ds.file_meta.TransferSyntaxUID,
                              body=with_pixel_length(ds, declared=declared, present=present))
    assert status.Status == 0xC210
    assert status.ErrorComment.startswith(
        f"the data set ends inside PixelData (7FE0,0010): {present} of")
    _nothing_kept(node)


def test_pixel_data_shorter_than_the_image_is_refused(make_node, tmp_path: Path) -> None:
    """Whole as a data set, but 4096 bytes of pixels for a 64 × 64 16-bit image: 0xA900
    (data set does not match SOP class), sent by storescu."""
    from tests.node._senders import mr_small

    node = make_node(no_model=True)
    ds = mr_small()
    ds.PixelData = bytes(ds.PixelData)[:4096]
    said = _store_response(node, _mr_small_file(tmp_path, ds))
    assert "0xa900: Error: Data Set does not match SOP Class" in said
    assert "PixelData holds 4096 bytes; the image needs 8192" in said
    _nothing_kept(node)


def test_rows_encoded_as_a_sequence_is_refused(make_node, tmp_path: Path) -> None:
    """Rows (0028,0010) sent as SQ holding an item: 0xA900 naming Rows, by storescu."""
    from pydicom.dataelem import DataElement
    from pydicom.sequence import Sequence

    from tests.node._senders import mr_small

    node = make_node(no_model=True)
    ds = mr_small()
    item = Dataset()
    item.Rows = 64
    ds[0x00280010] = DataElement(0x00280010, "SQ", Sequence([item]))
    said = _store_response(node, _mr_small_file(tmp_path, ds))
    assert "0xa900: Error: Data Set does not match SOP Class" in said
    assert "Rows is not a positive number (VR SQ)" in said
    _nothing_kept(node)


@pytest.mark.parametrize("cut", ["a fragment", "the delimiter"])
def test_compressed_pixel_data_with_incomplete_fragments_is_refused(make_node,
                                                                    cut: str) -> None:
    """Encapsulated pixel data is not decoded, but its items must be complete up to the
    sequence delimiter: pydicom's own emri_small_jpeg_2k_lossless_too_short.dcm (the
    last fragment cut), and JPEG2000.dcm without its sequence delimiter."""
    from tests.node._senders import body_of, send_raw_c_store, testdata_file

    node = make_node(no_model=True)
    name = "emri_small_jpeg_2k_lossless_too_short.dcm" if cut == "a fragment" \
        else "JPEG2000.dcm"
    path = testdata_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    body = body_of(path)
    if cut == "the delimiter":
        assert body.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
        body = body[:-8]
    status = send_raw_c_store(node.dimse_port, node.ae_title, sop_class=ds.SOPClassUID,
                              sop_instance=ds.SOPInstanceUID,
                              syntax=ds.file_meta.TransferSyntaxUID, body=body)
    assert status.Status == 0xC210
    assert "PixelData (7FE0,0010)" in status.ErrorComment
    _nothing_kept(node)


def test_a_store_the_node_cannot_catalogue_leaves_no_file(make_node) -> None:
    """PatientName sent with VR FD (14 bytes are no doubles): the value cannot be
    catalogued. The peer gets a failure naming the attribute, and no file is left
    without its row."""
    from tests.node._senders import mr_small, send_raw_c_store, with_vr

    node = make_node(no_model=True)
    ds = mr_small(PatientName="Nobody^Here")
    status = send_raw_c_store(node.dimse_port, node.ae_title, sop_class=ds.SOPClassUID,
                              sop_instance=ds.SOPInstanceUID,
                              syntax=ds.file_meta.TransferSyntaxUID,
                              body=with_vr(ds, "PatientName", b"FD"))
    assert status.Status == 0xC210
    assert status.ErrorComment == "PatientName cannot be decoded as FD"
    _nothing_kept(node)


def test_one_bad_instance_does_not_abort_the_batch(make_node, tmp_path: Path) -> None:
    """pydicom-data's explicit_VR-UN.dcm among good files, sent by dcmsend over one
    association: dcmsend announces it with a SOP Class UID of its own reading, not a
    storage SOP class; the node refuses that one instance (0x0122, SOP class not
    supported) and stores all the others."""
    from tests.node._senders import testdata_file

    node = make_node(no_model=True)
    good = write_files([ct_instance(study_uid="1.2.826.0.1.66", series_uid="1.2.826.0.1.66.1",
                                    patient_id="P66", instance_number=i, seed=i)
                        for i in range(4)], tmp_path / "good")
    batch = [good[0], good[1], testdata_file("explicit_VR-UN.dcm"), good[2], good[3]]
    result = subprocess.run(["dcmsend", "-v", "-aec", node.ae_title, "127.0.0.1",
                             str(node.dimse_port), *map(str, batch)],
                            capture_output=True, text=True, timeout=120)
    said = result.stdout + result.stderr
    assert "Peer aborted" not in said, said
    assert "Refused: SOPClassNotSupported" in said or "0x0122" in said, said
    expected = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in good}
    assert _catalogued(node) == expected
