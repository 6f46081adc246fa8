"""TLS on the DIMSE port, the maximum of simultaneous associations, slow and hostile
peers (half-sent PDUs, absurd PDU lengths, TLS handshakes that never come), `precedent
status`."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests._peers import dcmtk, echoscu, storescu
from tests._synthetic import ct_instance, write_files
from tests.node._senders import associate_rq, hostile_socket, pdu_header


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


# --------------------------------------------------------------------------- hostile peers


def _open(sock: socket.socket) -> bool:
    """True while the node keeps ``sock``'s connection open (and has sent nothing)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def _read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    """What the node sends until it closes the connection; the test fails if it keeps
    the connection open longer than ``seconds``."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the node kept a hostile connection open for over {seconds} s")
    except ConnectionResetError:
        pass
    return received


def _dcmtk_limits(seconds: int) -> list[object]:
    """dcmtk's own timeouts: connect, ACSE and DIMSE answers within ``seconds``."""
    return ["-to", seconds, "-ta", seconds, "-td", seconds]


#: A-ABORT, source service provider, reason invalid PDU parameter value (PS3.8 9.3.8)
A_ABORT_INVALID_PARAMETER = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0x02, 0x06])


def test_half_sent_associations_do_not_lock_out_the_pacs(make_node, tmp_path: Path) -> None:
    """Another host opens more connections than max_associations and sends on each the
    first 30 bytes of an A-ASSOCIATE-RQ; a third one announces a 4 GiB PDU. The PACS's
    echo and store still succeed within timeout_s, the over-budget connections are
    closed at once, the 4 GiB PDU is aborted at once, and the half-sent ones are closed
    when their PDU's deadline (timeout_s) passes."""
    timeout_s = 8  # room for echo and store on a loaded machine before the deadline
    node = make_node(no_model=True, node={"max_associations": 2, "max_pending_per_host": 2,
                                          "timeout_s": timeout_s})
    request = associate_rq(node.ae_title)
    assert len(request) > 30
    held = [hostile_socket(node.dimse_port, request[:30], source="127.0.0.2")
            for _ in range(4)]
    absurd = hostile_socket(node.dimse_port, pdu_header(0x01, 0xFFFFFFF0), source="127.0.0.3")
    try:
        echo = dcmtk("echoscu", *_dcmtk_limits(timeout_s), "-aec", node.ae_title,
                     "127.0.0.1", node.dimse_port, timeout=3 * timeout_s)
        assert echo.returncode == 0, echo.stderr
        ds = ct_instance(study_uid="1.2.826.0.1.77", series_uid="1.2.826.0.1.77.1",
                         patient_id="P77")
        store = storescu(node.dimse_port, write_files([ds], tmp_path), called=node.ae_title,
                         extra=_dcmtk_limits(timeout_s), timeout=3 * timeout_s)
        assert store.returncode == 0, store.stderr
        stored = node.services.connections.get().execute(
            "SELECT sop_instance_uid FROM instances").fetchall()
        assert [r[0] for r in stored] == [str(ds.SOPInstanceUID)]
        # two connections from 127.0.0.2 are negotiating (held), two more were refused
        assert sum(_open(s) for s in held) == 2
        assert _read_until_closed(absurd, timeout_s / 2) == A_ABORT_INVALID_PARAMETER
        for sock in held:
            assert _read_until_closed(sock, timeout_s + 5) == b""
        assert echoscu(node.dimse_port, called=node.ae_title).returncode == 0
    finally:
        for sock in [*held, absurd]:
            sock.close()


def test_a_tls_handshake_that_never_comes_does_not_block_the_port(make_node,
                                                                  tmp_path: Path) -> None:
    """With TLS on, a peer that connects and never completes its handshake (silent, or a
    record header and nothing more) blocks neither the port nor other callers, and is
    closed after timeout_s."""
    timeout_s = 6
    key, cert = _self_signed(tmp_path, "node")
    ckey, ccert = _self_signed(tmp_path, "client")
    node = make_node(no_model=True, node={"timeout_s": timeout_s, "tls": {
        "enabled": True, "cert_file": cert, "key_file": key, "ca_file": ccert}})
    silent = hostile_socket(node.dimse_port, b"", source="127.0.0.2")
    partial = hostile_socket(node.dimse_port, b"\x16\x03\x01\x02\x00", source="127.0.0.2")
    try:
        tls = ["+tls", ckey, ccert, "+cf", cert, "-ic"]
        echo = dcmtk("echoscu", *tls, *_dcmtk_limits(timeout_s), "-aec", node.ae_title,
                     "127.0.0.1", node.dimse_port, timeout=3 * timeout_s)
        assert echo.returncode == 0, echo.stderr
        assert _read_until_closed(silent, timeout_s + 5) == b""
        assert _read_until_closed(partial, timeout_s + 5) == b""
    finally:
        for sock in (silent, partial):
            with contextlib.suppress(OSError):
                sock.close()
