"""TLS on the DIMSE port, the maximum of simultaneous associations, `precedent status`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests._peers import echoscu


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return key, cert


def test_tls_dimse_accepts_tls_and_refuses_plain(make_node, tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path, "node")
    ckey, ccert = _self_signed(tmp_path, "client")
    node = make_node(no_model=True, node={"tls": {
        "enabled": True, "cert_file": cert, "key_file": key, "ca_file": ccert}})
    ok = echoscu(node.dimse_port, called=node.ae_title,
                 extra=["+tls", ckey, ccert, "+cf", cert, "-ic"])
    assert ok.returncode == 0, ok.stderr
    plain = echoscu(node.dimse_port, called=node.ae_title)
    assert plain.returncode != 0
    untrusted_key, untrusted_cert = _self_signed(tmp_path, "stranger")
    refused = echoscu(node.dimse_port, called=node.ae_title,
                      extra=["+tls", untrusted_key, untrusted_cert, "+cf", cert, "-ic"])
    assert refused.returncode != 0
    assert echoscu(node.dimse_port, called=node.ae_title,
                   extra=["+tls", ckey, ccert, "+cf", cert, "-ic"]).returncode == 0


def test_tls_without_certificate_stops_start_up(tmp_path: Path) -> None:
    from node.errors import SettingsError
    from node.settings import load_settings

    with pytest.raises(SettingsError, match=r"setting 'node\.tls' cert_file and key_file"):
        load_settings(None, {"node": {"tls": {"enabled": True}}})
    with pytest.raises(SettingsError, match=r"cert_file .* does not exist"):
        load_settings(None, {"node": {"tls": {"enabled": True, "cert_file": tmp_path / "x",
                                              "key_file": tmp_path / "y"}}})


def test_associations_beyond_the_maximum_are_rejected_transiently(make_node) -> None:
    node = make_node(no_model=True, node={"max_associations": 2})
    held = []
    for _ in range(2):
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.dimse_port, ae_title=node.ae_title)
        assert assoc.is_established
        held.append(assoc)
    try:
        result = echoscu(node.dimse_port, called=node.ae_title)
        assert result.returncode != 0
        assert "Local Limit Exceeded" in result.stderr
    finally:
        for assoc in held:
            assoc.release()
    assert echoscu(node.dimse_port, called=node.ae_title).returncode == 0


def test_status_command_reads_the_catalog_and_the_running_node(make_node) -> None:
    node = make_node(no_model=True)
    result = subprocess.run(
        [sys.executable, "-m", "node", "status", "--json", "--data-dir", str(node.data_dir)],
        capture_output=True, text=True, timeout=60,
        env={"PRECEDENT_HTTP__PORT": node.http_url.rsplit(":", 1)[1], "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["running"] is True
    assert data["model"]["status"] == "unavailable"
    assert "set [model] path" in data["model"]["reason"]
    assert data["queue"]["by_state"]["pending"] == 0
