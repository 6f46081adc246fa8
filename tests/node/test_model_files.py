"""Bringing the model in offline: `precedent model fetch` (against a Hugging Face
endpoint on loopback, through huggingface_hub's real download), `model check`, `model
tryout`; a hub that cannot be reached fails in one line; commands use the configured
model; a node started without its model picks the folder up when it appears."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.model_files import BIOMEDCLIP_FILES, TRYOUT_LABEL
from tests._peers import free_port
from tests._synthetic import make_studies, write_files
from tests.conftest import ASSETS
from tests.node._cli import cli, one_line_error, start_serve

pytestmark = pytest.mark.slow

BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"


@pytest.fixture
def hub(tiny_model_dir: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A Hugging Face endpoint on loopback serving the five files (the tiny model's config
    and weights under BiomedCLIP's names, the shipped BiomedBERT config and tokenizer
    files), as ``/{repo}/resolve/{revision}/{file}`` with the headers huggingface_hub
    reads. Yields its URL and what it serves."""
    sources = {"open_clip_config.json": tiny_model_dir / "open_clip_config.json",
               "open_clip_pytorch_model.bin": tiny_model_dir / "open_clip_pytorch_model.bin"}
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        sources[name] = ASSETS / "models" / "biomedclip" / name
    served = {f"/{repo}/resolve/main/{name}": sources[name].read_bytes()
              for repo, name in BIOMEDCLIP_FILES}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            data = served.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", "a" * 40)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", {
            path.rsplit("/", 1)[1]: data for path, data in served.items()}
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_writes_the_five_files_and_their_hashes_then_check_loads_them(
        tmp_path: Path, hub: tuple[str, dict[str, bytes]]) -> None:
    url, served = hub
    folder = tmp_path / "biomedclip"
    fetched = cli("model", "fetch", str(folder), home=tmp_path, HF_HUB_OFFLINE="0",
                  HF_ENDPOINT=url)
    assert fetched.returncode == 0, fetched.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"] == BIOMEDCLIP and manifest["endpoint"] == url
    assert set(manifest["files"]) == set(served) and len(served) == 5
    for name, data in served.items():
        assert (folder / name).read_bytes() == data
        assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["files"]["vocab.txt"]["repository"] == \
        "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
    assert f"set [model] path = \"{folder}\"" in fetched.stdout

    checked = cli("model", "check", str(folder), home=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"model folder {folder}: 5 files match manifest.json" in checked.stdout
    assert "loads: identity local-dir:biomedclip@" in checked.stdout

    weights = folder / "open_clip_pytorch_model.bin"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one bit flipped
    broken = cli("model", "check", str(folder), home=tmp_path)
    assert one_line_error(broken) == (
        f"precedent: model folder {folder}: open_clip_pytorch_model.bin does not match its "
        "manifest (damaged or replaced; fetch it again)")


def test_fetch_from_a_hub_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("model", "fetch", str(tmp_path / "m"), "--endpoint", url, home=tmp_path,
                 HF_HUB_OFFLINE="0")
    line = one_line_error(result)
    assert line.startswith("precedent: open_clip_config.json of microsoft/BiomedCLIP-"
                           f"PubMedBERT_256-vit_base_patch16_224 could not be downloaded from "
                           f"{url}")


def test_an_unreachable_hub_fails_in_one_line_before_open_clip_retries(tmp_path: Path) -> None:
    study = next(make_studies(1, instances_per_study=1))
    write_files(study.datasets, tmp_path / "archive")
    closed = f"http://127.0.0.1:{free_port()}"
    args = ["index", "import", str(tmp_path / "archive"), "--data-dir", str(tmp_path / "d"),
            "--model", BIOMEDCLIP]
    line = one_line_error(cli(*args, home=tmp_path, HF_HUB_OFFLINE="0", HF_ENDPOINT=closed))
    assert line.startswith(f"precedent: model {BIOMEDCLIP} cannot be loaded: the Hugging Face "
                           f"hub ({closed}) cannot be reached from this machine")
    assert "`precedent model fetch DIR`" in line
    line = one_line_error(cli(*args, home=tmp_path))  # HF_HUB_OFFLINE=1
    assert "is not in this machine's Hugging Face cache and HF_HUB_OFFLINE is set" in line


def test_commands_use_the_configured_model(tmp_path: Path) -> None:
    tryout = cli("model", "tryout", str(tmp_path / "tryout"), home=tmp_path)
    assert tryout.returncode == 0, tryout.stderr
    assert TRYOUT_LABEL in (tmp_path / "tryout" / "README.txt").read_text()
    checked = cli("model", "check", str(tmp_path / "tryout"), home=tmp_path)
    assert f"({TRYOUT_LABEL})" in checked.stdout
    for study in make_studies(2, instances_per_study=2):
        write_files(study.datasets, tmp_path / "archive" / study.patient_id)
    config = tmp_path / "precedent.toml"
    config.write_text('[node]\ndata_dir = "data"\n[model]\npath = "tryout"\n')
    imported = cli("index", "import", str(tmp_path / "archive"), home=tmp_path)  # no --model
    assert imported.returncode == 0, imported.stderr
    assert "model identity: local-dir:tryout@" in imported.stdout
    assert "vectors: study 2, series 2, instance 4" in imported.stdout
    rebuilt = cli("index", "rebuild", home=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "re-embedding 4 instances with local-dir:tryout@" in rebuilt.stderr


def test_a_node_without_its_model_picks_the_folder_up_when_it_appears(tmp_path: Path) -> None:
    later = tmp_path / "models" / "later"
    serve = start_serve("--data-dir", str(tmp_path / "data"), "--model", f"local-dir:{later}",
                        home=tmp_path)
    try:
        body = serve.wait("unavailable")
        assert f"model folder {later} does not exist" in body["model"]["reason"]
        assert cli("model", "tryout", str(later), home=tmp_path).returncode == 0
        body = serve.wait("ready", timeout=60)  # no restart
        assert body["model"]["identity"].startswith("local-dir:later@")
        status = cli("status", "--data-dir", str(tmp_path / "data"), home=tmp_path)
        assert "model: ready" in status.stdout
        assert f"running (pid {serve.process.pid})" in status.stdout
    finally:
        assert serve.stop() == 0, serve.log()
    assert "the node tries again every 5 s" in serve.log()
