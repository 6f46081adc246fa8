"""Orthanc as the hospital PACS, auto-forwarding every stored instance to the node."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest

from tests._peers import start_orthanc, storescu, test_files

pytestmark = pytest.mark.slow


def test_every_instance_orthanc_forwards_arrives(make_node, tmp_path: Path) -> None:
    from node.storage import aes

    node = make_node(no_model=True, node={"allow_any_source": False})
    aes.add_source(node.services.connections.get(), "ORTHANC",
                   permissions=aes.parse_permissions("echo,store"))
    orthanc = start_orthanc(
        tmp_path, modalities={"precedent": (node.ae_title, "127.0.0.1", node.dimse_port)},
        forward_to="precedent",
    )
    try:
        # a mix of modalities and transfer syntaxes that Orthanc accepts and forwards
        names = {"CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm",
                 "examples_ybr_color.dcm", "reportsi.dcm", "rtdose.dcm", "JPGExtended.dcm",
                 "waveform_ecg.dcm", "examples_palette.dcm"}
        files = [f for f in test_files() if f.name in names]
        assert len(files) >= 8
        result = storescu(orthanc.dimse_port, files, called=orthanc.aet)
        assert result.returncode == 0, result.stderr
        expected = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                    for f in files}
        deadline = time.monotonic() + 60
        stored: set[str] = set()
        while time.monotonic() < deadline and stored != expected:
            stored = {r[0] for r in node.services.connections.get().execute(
                "SELECT sop_instance_uid FROM instances")}
            time.sleep(0.2)
        assert stored == expected, orthanc.log()[-2000:]
        sources = {r[0] for r in node.services.connections.get().execute(
            "SELECT DISTINCT source FROM instances")}
        assert sources == {"ORTHANC"}
    finally:
        orthanc.stop()
