"""What the REST side writes to the node's log: one access line per request, without
query strings, and no patient name at INFO or above whatever a client sends.

The node runs as ``precedent serve`` (its own logging set-up, uvicorn's handlers
included), its whole output captured; ``Secret^Patient`` is sent through every REST
path — STOW-RS, QIDO-RS, the similar-case upload, WADO-RS — valid and malformed.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydicom.dataelem import DataElement
from pydicom.uid import generate_uid

from tests._peers import free_port
from tests._synthetic import ct_instance, multipart_related, to_bytes

SECRET = "Secret"
NAME = "Secret^Patient"


@dataclass
class ServedNode:
    url: str
    log_file: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[ServedNode]:
    folder = tmp_path_factory.mktemp("served")
    http_port = free_port()
    log_file = folder / "node.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "serve", "--data-dir", str(folder / "data"),
             "--host", "127.0.0.1", "--dimse-port", str(free_port()), "--http-port",
             str(http_port), "--model", f"local-dir:{tiny_model_dir}", "--allow-any-source"],
            stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
            env={**os.environ, "PRECEDENT_LOG_LEVEL": "INFO",
                 "PRECEDENT_NODE__FREE_SPACE_RESERVE_MB": "0",
                 "PRECEDENT_MODEL__PRECISION": "fp32"})
    node = ServedNode(f"http://127.0.0.1:{http_port}", log_file, process)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{node.url}/health", timeout=2).json()["model"]["status"] == "ready":
                break
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        assert process.poll() is None, node.log()[-3000:]
        time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"the node did not load its model:\n{node.log()[-3000:]}")
    yield node
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def _secret_instance(**changes: object) -> bytes:
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(),
                     patient_id="SecretID", size=16)
    ds.PatientName = NAME
    ds.StudyDescription = f"{NAME} follow-up"
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return to_bytes(ds)


def _wrong_vr_name() -> bytes:
    """PatientName encoded with VR US: its bytes are the name, its value is not."""
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(),
                     patient_id="SecretID", size=16)
    del ds.PatientName
    ds.add(DataElement(0x00100010, "UL", 0))
    data = to_bytes(ds)
    return data.replace(b"\x10\x00\x10\x00UL\x04\x00\x00\x00\x00\x00",
                        b"\x10\x00\x10\x00US\x0e\x00" + NAME.encode())


def _stow(node: ServedNode, parts: list[tuple[str, bytes]], path: str = "/studies"
          ) -> httpx.Response:
    body, content_type = multipart_related(parts)
    return httpx.post(f"{node.url}/dicom-web{path}", content=body,
                      headers={"Content-Type": content_type}, timeout=60)


def test_no_patient_name_reaches_the_log_through_rest(served: ServedNode) -> None:
    good = _secret_instance()
    answers = [
        _stow(served, [("application/dicom", good)]).status_code,  # stored
        _stow(served, [("application/dicom", good)]).status_code,  # duplicate, kept
        _stow(served, [("application/dicom", _wrong_vr_name())]).status_code,
        _stow(served, [("application/dicom", good[:-3000])]).status_code,  # cut short
        _stow(served, [("application/dicom", _secret_instance(StudyInstanceUID=NAME))]
              ).status_code,
        _stow(served, [("application/dicom", _secret_instance(SOPInstanceUID="1.2.x"))]
              ).status_code,
        _stow(served, [("application/dicom", _secret_instance())], path="/studies/1.2.3"
              ).status_code,  # another study than the path's
        _stow(served, [("application/dicom", b"DICM" + NAME.encode() * 20)]).status_code,
        _stow(served, [("text/plain", NAME.encode())]).status_code,
        _stow(served, [("application/dicom", good)], path=f"/studies/{NAME}").status_code,
        httpx.post(f"{served.url}/dicom-web/studies", content=NAME.encode(),
                   headers={"Content-Type": f"multipart/related; boundary={NAME}"}
                   ).status_code,
    ]
    assert answers[0] == 200 and answers[-2] == 400
    queries = [
        {"PatientName": NAME}, {"PatientName": "Secret*"}, {"PatientName": f"{NAME}\x00"},
        {"PatientID": "SecretID"}, {"StudyDescription": f"{NAME}*"},
        {"PatientName": NAME, "StudyDate": "20241301"}, {NAME: "x"},
        {"includefield": NAME}, {"PatientName": NAME, "limit": NAME},
    ]
    statuses = [httpx.get(f"{served.url}/dicom-web/studies", params=q, timeout=30).status_code
                for q in queries]
    assert statuses[0] == 200 and 400 in statuses
    httpx.get(f"{served.url}/dicom-web/studies/{NAME}/series", timeout=30)
    httpx.get(f"{served.url}/dicom-web/studies/{NAME}/similar", timeout=30)
    httpx.get(f"{served.url}/dicom-web/studies/{NAME}/metadata", timeout=30)
    httpx.get(f"{served.url}/dicom-web/similar", params={"text": NAME}, timeout=30)
    for upload in (good, _wrong_vr_name(), good[:-3000], NAME.encode()):
        httpx.post(f"{served.url}/dicom-web/similar", content=upload,
                   headers={"Content-Type": "application/dicom"}, timeout=60)
    httpx.post(f"{served.url}/dicom-web/similar", content=NAME.encode(),
               headers={"Content-Type": "image/png"}, timeout=60)
    httpx.get(f"{served.url}/{NAME}", timeout=30)
    time.sleep(0.5)  # the last access lines
    log = served.log()
    leaks = [line for line in log.splitlines() if SECRET in line]
    assert leaks == [], "\n".join(leaks[:20])
    # every request has its access line, without its query string
    access = [line for line in log.splitlines() if " node.web.access " in line]
    assert len(access) >= len(answers) + len(queries) + 10
    assert not any("?" in line for line in access)
    assert any(re.search(r"GET /dicom-web/studies 200 \d+\.\d ms 127\.0\.0\.1:\d+$", line)
               for line in access)
    assert any(" GET /dicom-web/studies/*/similar 400 " in line for line in access)
    assert any(" POST /dicom-web/studies/* 400 " in line for line in access)


def test_access_lines_mask_what_is_not_a_route_word_or_uid() -> None:
    from node.web.access_log import loggable_path

    words = frozenset({"dicom-web", "studies", "series", "instances", "frames", "bulk"})
    assert loggable_path("/dicom-web/studies/1.2.3/series/1.2.3.4/instances/5.6/frames/1,3",
                         words) == "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/5.6/frames/1,3"
    assert loggable_path("/dicom-web/studies/1.2/series/3.4/instances/5/bulk/7FE00010",
                         words).endswith("/bulk/7FE00010")
    assert loggable_path("/dicom-web/studies/Doe^John/series", words) == \
        "/dicom-web/studies/*/series"
    assert loggable_path("/Doe^John", words) == "/*"


def test_the_access_log_is_one_info_line_per_request(make_node, caplog) -> None:  # type: ignore[no-untyped-def]
    node = make_node(no_model=True)
    with caplog.at_level(logging.INFO, logger="node.web.access"), node.http() as http:
        assert http.get("/dicom-web/studies", params={"PatientName": "Doe*"}).status_code == 200
        assert http.get("/dicom-web/nothing-here").status_code == 404
    lines = [r for r in caplog.records if r.name == "node.web.access"]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    first, second = (r.getMessage() for r in lines)
    assert re.fullmatch(r"GET /dicom-web/studies 200 \d+\.\d ms 127\.0\.0\.1:\d+", first)
    assert re.fullmatch(r"GET /dicom-web/\* 404 \d+\.\d ms 127\.0\.0\.1:\d+", second)
