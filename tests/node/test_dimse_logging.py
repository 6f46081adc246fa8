"""No patient value reaches the node's log above debug level, whatever a peer sends
over DIMSE (docs/api.md): a patient named ``Secret^Patient`` through C-STORE (dcmtk),
C-FIND and C-GET on that name (dcmtk), and malformed C-STOREs carrying it (a wrong VR
for PatientName, a data set cut short). The STOW-RS and QIDO-RS paths reuse the
``node_log`` fixture (tests/_logs.py) in tests/web."""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian

from tests._logs import CapturedLog
from tests._peers import findscu, getscu, storescu
from tests._synthetic import ct_instance, write_files
from tests.node._senders import mr_small, send_raw_c_store, with_pixel_length, with_vr

SECRET = "Secret"


def test_patient_names_stay_at_debug_level(make_node, node_log: CapturedLog,
                                           tmp_path: Path) -> None:
    node = make_node(no_model=True)
    ds = ct_instance(study_uid="1.2.826.0.1.88", series_uid="1.2.826.0.1.88.1",
                     patient_id="P88")
    ds.PatientName = "Secret^Patient"
    assert storescu(node.dimse_port, write_files([ds], tmp_path / "in"),
                    called=node.ae_title).returncode == 0

    found = tmp_path / "found"
    find = findscu(node.dimse_port, {"QueryRetrieveLevel": "STUDY", "PatientName": "Secret*",
                                     "StudyInstanceUID": ""},
                   called=node.ae_title, out_dir=found)
    assert find.returncode == 0, find.stderr
    assert len(list(found.glob("rsp*.dcm"))) == 1  # the query did match the name

    got = tmp_path / "got"
    get = getscu(node.dimse_port, {"QueryRetrieveLevel": "STUDY",
                                   "StudyInstanceUID": "1.2.826.0.1.88",
                                   "PatientName": "Secret*"},
                 called=node.ae_title, out_dir=got)
    assert get.returncode == 0, get.stderr
    assert len(list(got.iterdir())) == 1

    sop_class = mr_small().SOPClassUID
    malformed = {
        # PatientName sent as FD: its 14 bytes are no doubles
        "1.2.826.0.1.88.2": with_vr(mr_small(PatientName="Secret^Patient",
                                             SOPInstanceUID="1.2.826.0.1.88.2"),
                                    "PatientName", b"FD"),
        # cut short in its pixel data
        "1.2.826.0.1.88.3": with_pixel_length(
            mr_small(PatientName="Secret^Patient", SOPInstanceUID="1.2.826.0.1.88.3"),
            declared=8192, present=5192),
    }
    statuses = {
        sop_instance: send_raw_c_store(node.dimse_port, node.ae_title, sop_class=sop_class,
                                       sop_instance=sop_instance,
                                       syntax=ExplicitVRLittleEndian, body=body)
        for sop_instance, body in malformed.items()
    }

    assert node_log.lines_with(SECRET) == []
    # the capture saw the name: at debug level (the identifiers the handlers log)
    assert node_log.lines_with(SECRET, above=logging.NOTSET)
    assert all(line.startswith("DEBUG") for line in node_log.lines_with(
        SECRET, above=logging.NOTSET))
    # the malformed ones were refused, and the refusal does not quote the name either
    for sop_instance, status in statuses.items():
        assert status.Status == 0xC210, sop_instance
        assert SECRET not in str(status.get("ErrorComment", ""))
