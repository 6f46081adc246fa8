"""Real peers for the tests: Orthanc (Debian package) and the dcmtk command-line tools.

Helpers (plain functions, usable from benchmarks too):

- :func:`free_port` — a TCP port free on 127.0.0.1 right now;
- :func:`start_orthanc` — Orthanc with the DICOMweb plugin on free ports, its own
  storage folder, optional ``DicomModalities`` and optional auto-forwarding of every
  stored instance (Lua ``OnStoredInstance`` + ``SendToModality``);
- :func:`start_storescp` — dcmtk ``storescp`` as a C-MOVE destination that writes
  what it receives into a folder;
- :func:`dcmtk` and the shorthands :func:`echoscu`, :func:`storescu`, :func:`findscu`,
  :func:`movescu`, :func:`getscu` — run a dcmtk tool, return the ``CompletedProcess``;
- :func:`test_files` — pydicom's shipped test files (and pydicom-data's) that are
  readable DICOM Part 10 files.

Pytest fixtures (register with ``pytest_plugins = ["tests._peers"]`` in the top
``tests/conftest.py``, or import them there):

- ``make_orthanc`` — factory ``make_orthanc(*, modalities=None, forward_to=None,
  stable_age=None, aet="ORTHANC") -> Orthanc``; every Orthanc started is stopped at
  teardown;
- ``orthanc`` — one plain Orthanc for the test;
- ``make_storescp`` — factory ``make_storescp(aet="STORESCP") -> StoreSCP``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

__all__ = [
    "DCMTK_UNSENDABLE",
    "Orthanc",
    "StoreSCP",
    "dcmtk",
    "echoscu",
    "findscu",
    "free_port",
    "getscu",
    "movescu",
    "start_orthanc",
    "start_storescp",
    "storescu",
    "test_files",
    "wait_for_port",
]

ORTHANC_BIN = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 (bind to port 0 and give it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")
        time.sleep(0.05)


# --------------------------------------------------------------------------- Orthanc


@dataclass
class Orthanc:
    """A running Orthanc (``Orthanc`` from the Debian package) with DICOMweb enabled."""

    aet: str
    dimse_port: int
    http_port: int
    folder: Path
    process: subprocess.Popen[bytes]
    log_file: Path
    host: str = "127.0.0.1"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An httpx client on Orthanc's REST API (close it, or use it in ``with``)."""
        return httpx.Client(base_url=self.http_url, timeout=timeout)

    def upload(self, files: Iterable[Path | bytes]) -> list[str]:
        """POST each file to ``/instances``; return Orthanc's instance ids."""
        ids = []
        with self.client() as http:
            for item in files:
                data = item if isinstance(item, bytes) else Path(item).read_bytes()
                answer = http.post("/instances", content=data,
                                   headers={"Content-Type": "application/dicom"})
                answer.raise_for_status()
                body = answer.json()
                ids.append(body["ID"] if isinstance(body, dict) else body[0]["ID"])
        return ids

    def instances(self) -> list[str]:
        with self.client() as http:
            return list(http.get("/instances").json())

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


_FORWARD_LUA = """\
function OnStoredInstance(instanceId, tags, metadata, origin)
   SendToModality(instanceId, '{target}')
end
"""

def start_orthanc(
    tmp_path: Path,
    *,
    modalities: dict[str, tuple[str, str, int]] | None = None,
    forward_to: str | None = None,
    stable_age: int | None = None,
    aet: str = "ORTHANC",
    extra_config: dict[str, object] | None = None,
    timeout: float = 60.0,
) -> Orthanc:
    """Start Orthanc on free localhost ports with its own folder under ``tmp_path``.

    ``modalities`` maps a symbolic name to ``(ae_title, host, port)``; it becomes
    Orthanc's ``DicomModalities`` (the peers Orthanc may send to and accept
    C-FIND/C-MOVE from). ``forward_to`` names one of them: every instance Orthanc
    stores is then sent there with C-STORE (a Lua ``OnStoredInstance`` hook),
    the way a PACS auto-forwards to the node. ``stable_age`` sets ``StableAge``
    (seconds before a study counts as stable). Returns once ``/system`` answers.
    """
    modalities = dict(modalities or {})
    if forward_to is not None and forward_to not in modalities:
        raise ValueError(
            f"forward_to={forward_to!r} is not one of the modalities {sorted(modalities)}"
        )
    for attempt in range(3):
        folder = Path(tmp_path) / f"orthanc-{aet.lower()}-{int(time.time() * 1000)}-{attempt}"
        folder.mkdir(parents=True)
        (folder / "storage").mkdir()
        http_port, dimse_port = free_port(), free_port()
        config: dict[str, object] = {
            "Name": f"test-{aet}",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": http_port,
            "DicomServerEnabled": True,
            "DicomAet": aet,
            "DicomPort": dimse_port,
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowGet": True,
            "DicomScuTimeout": 10,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SaveJobs": False,
            "HttpsVerifyPeers": False,
            "DicomModalities": {name: list(v) for name, v in modalities.items()},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                          "Host": f"127.0.0.1:{http_port}", "Ssl": False},
        }
        if stable_age is not None:
            config["StableAge"] = int(stable_age)
        if forward_to is not None:
            script = folder / "forward.lua"
            script.write_text(_FORWARD_LUA.replace("{target}", forward_to))
            config["LuaScripts"] = [str(script)]
        config.update(extra_config or {})
        config_file = folder / "orthanc.json"
        config_file.write_text(json.dumps(config, indent=2))
        log_file = folder / "orthanc.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [ORTHANC_BIN, "--no-jobs", str(config_file)],
                stdout=log, stderr=subprocess.STDOUT, cwd=folder,
            )
        orthanc = Orthanc(aet, dimse_port, http_port, folder, process, log_file)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break  # it died, most likely a port taken between free_port() and bind
            try:
                if httpx.get(f"{orthanc.http_url}/system", timeout=1.0).status_code == 200:
                    wait_for_port(dimse_port, timeout=10)
                    return orthanc
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        orthanc.stop()
        if attempt == 2 or process.returncode is None:
            raise RuntimeError(f"Orthanc did not start; its log:\n{orthanc.log()[-4000:]}")
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- dcmtk


def dcmtk(tool: str, *args: object, timeout: float = 120.0,
          check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run dcmtk's ``tool`` with ``args`` (stringified); capture stdout/stderr as text."""
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"dcmtk tool {tool!r} is not installed (apt-get install dcmtk)")
    return subprocess.run([path, *(str(a) for a in args)], capture_output=True, text=True,
                          timeout=timeout, check=check)


def _assoc_args(port: int, called: str, calling: str, host: str) -> list[object]:
    return ["-aec", called, "-aet", calling, host, port]


def echoscu(port: int, *, called: str, calling: str = "ECHOSCU",
            host: str = "127.0.0.1", extra: Sequence[object] = ()) -> subprocess.CompletedProcess[str]:
    return dcmtk("echoscu", *extra, *_assoc_args(port, called, calling, host))


def storescu(port: int, files: Iterable[Path | str], *, called: str, calling: str = "STORESCU",
             host: str = "127.0.0.1", own_syntax: bool = True, extra: Sequence[object] = (),
             timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Send ``files`` over one association; further options go in ``extra``.

    With ``own_syntax`` (the default) each file is sent in its own transfer syntax,
    compressed or not (as a PACS forwards): a storescu ``-xf`` configuration proposing
    every (SOP class, transfer syntax) pair found in ``files`` is generated. Without it
    storescu proposes only uncompressed syntaxes (and fails on compressed files).
    """
    paths = [Path(f) for f in files]
    options: list[object] = list(extra)
    if own_syntax and paths:
        options = [*_own_syntax_config(paths), *options]
    return dcmtk("storescu", *options, *_assoc_args(port, called, calling, host),
                 *[str(f) for f in paths], timeout=timeout)


_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


def _own_syntax_config(paths: Sequence[Path]) -> list[object]:
    import tempfile

    import pydicom

    pairs: set[tuple[str, str]] = set()
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            pairs.add((str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
        except Exception:  # noqa: BLE001 — storescu reports the unreadable file itself
            continue
    syntaxes = sorted({ts for _, ts in pairs} | set(_UNCOMPRESSED))
    ts_names = {ts: f"TS{i}" for i, ts in enumerate(syntaxes)}
    lines = ["[[TransferSyntaxes]]"]
    for ts, name in ts_names.items():
        lines += [f"[{name}]", f"TransferSyntax1 = {ts}"]
    lines += ["[[PresentationContexts]]", "[PC]"]
    n = 0
    for sop_class, ts in sorted(pairs):
        for syntax in dict.fromkeys([ts, *_UNCOMPRESSED]):
            n += 1
            if n > 128:
                raise ValueError("more than 128 presentation contexts: send fewer kinds of file")
            lines.append(f"PresentationContext{n} = {sop_class}\\{ts_names[syntax]}")
    lines += ["[[Profiles]]", "[Own]", "PresentationContexts = PC"]
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", prefix="storescu-",
                                     delete=False) as handle:
        handle.write("\n".join(lines) + "\n")
    return ["-xf", handle.name, "Own"]


def _keys(keys: dict[str, str] | Sequence[str]) -> list[str]:
    if isinstance(keys, dict):
        items = [f"{k}={v}" if v != "" else k for k, v in keys.items()]
    else:
        items = list(keys)
    out: list[str] = []
    for item in items:
        out += ["-k", item]
    return out


def findscu(port: int, keys: dict[str, str] | Sequence[str], *, called: str,
            calling: str = "FINDSCU", model: str = "-S", host: str = "127.0.0.1",
            out_dir: Path | None = None,
            extra: Sequence[object] = ()) -> subprocess.CompletedProcess[str]:
    """C-FIND with ``keys`` (``{"QueryRetrieveLevel": "STUDY", "PatientID": "X*"}``; an
    empty value asks for the attribute back). ``model``: ``-S`` study root, ``-P``
    patient root. With ``out_dir`` the answers are written there (``-X``, rsp*.dcm)."""
    write: list[object] = []
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write = ["-X", "-od", out_dir]
    return dcmtk("findscu", model, *write, *extra, *_assoc_args(port, called, calling, host),
                 *_keys(keys))


def movescu(port: int, keys: dict[str, str] | Sequence[str], *, called: str, move_to: str,
            calling: str = "MOVESCU", model: str = "-S", host: str = "127.0.0.1",
            extra: Sequence[object] = ()) -> subprocess.CompletedProcess[str]:
    """C-MOVE to ``move_to`` (an AE title the called node must know)."""
    return dcmtk("movescu", model, "-aem", move_to, *extra,
                 *_assoc_args(port, called, calling, host), *_keys(keys))


def getscu(port: int, keys: dict[str, str] | Sequence[str], *, called: str, out_dir: Path,
           calling: str = "GETSCU", model: str = "-S", host: str = "127.0.0.1",
           extra: Sequence[object] = ()) -> subprocess.CompletedProcess[str]:
    """C-GET into ``out_dir`` over the same association."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return dcmtk("getscu", model, "-od", str(out_dir), *extra,
                 *_assoc_args(port, called, calling, host), *_keys(keys))


@dataclass
class StoreSCP:
    """dcmtk ``storescp`` receiving into ``folder`` (a C-MOVE destination)."""

    aet: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    log_file: Path = field(default=Path("/dev/null"))

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_storescp(tmp_path: Path, *, aet: str = "STORESCP") -> StoreSCP:
    """Start ``storescp`` on a free port accepting all storage SOP classes and the
    common transfer syntaxes (``+xa``), writing files under ``tmp_path/aet``."""
    folder = Path(tmp_path) / f"storescp-{aet.lower()}"
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        port = free_port()
        log_file = Path(tmp_path) / f"storescp-{aet.lower()}-{port}.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [shutil.which("storescp") or "storescp", "-aet", aet, "+xa", "-od", str(folder),
                 "-uf", str(port)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(port, timeout=10)
        except TimeoutError:
            process.kill()
            process.wait()
            continue
        return StoreSCP(aet, port, folder, process, log_file=log_file)
    raise RuntimeError("storescp did not start")


# --------------------------------------------------------------------------- files


#: shipped files that pydicom reads but dcmtk refuses to send (truncated, or the UIDs
#: only in the file meta): tests of malformed input use them on purpose
DCMTK_UNSENDABLE = frozenset({
    "MR_truncated.dcm", "SC_rgb_jpeg.dcm", "rtplan_truncated.dcm",
    "rtdose_rle.dcm", "rtdose_rle_1frame.dcm",
})


def test_files(*, include_pydicom_data: bool = False, sendable: bool = True) -> list[Path]:
    """pydicom's shipped test files that read as DICOM with the four key UIDs
    (with ``sendable``, minus :data:`DCMTK_UNSENDABLE`).

    (Never ``get_testdata_files('*')``: it tries to download and hangs offline.)
    """
    import pydicom

    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    if include_pydicom_data:
        with contextlib.suppress(ImportError):
            import data_store  # type: ignore[import-not-found]  # the pydicom-data package

            folders.append(Path(data_store.__file__).parent / "data")
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix in {".gz", ".bz2", ".json", ".py", ".txt"}:
                continue
            if sendable and path.name in DCMTK_UNSENDABLE:
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                if all(ds.get(k) for k in ("SOPInstanceUID", "SOPClassUID",
                                            "StudyInstanceUID", "SeriesInstanceUID")) \
                        and getattr(ds, "file_meta", None) is not None \
                        and ds.file_meta.get("TransferSyntaxUID"):
                    found.append(path)
            except Exception:  # noqa: BLE001 — malformed files are skipped on purpose
                continue
    return found


test_files.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def make_orthanc(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    """Factory: ``make_orthanc(modalities=..., forward_to=..., stable_age=..., aet=...)``."""
    started: list[Orthanc] = []

    def _make(**kwargs: object) -> Orthanc:
        orthanc = start_orthanc(tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(orthanc)
        return orthanc

    yield _make
    for orthanc in started:
        orthanc.stop()


@pytest.fixture
def orthanc(make_orthanc: Callable[..., Orthanc]) -> Orthanc:
    """One Orthanc with DICOMweb, no modalities."""
    return make_orthanc()


@pytest.fixture
def make_storescp(tmp_path: Path) -> Iterator[Callable[..., StoreSCP]]:
    """Factory: ``make_storescp(aet="STORESCP") -> StoreSCP``."""
    started: list[StoreSCP] = []

    def _make(aet: str = "STORESCP") -> StoreSCP:
        scp = start_storescp(tmp_path, aet=aet)
        started.append(scp)
        return scp

    yield _make
    for scp in started:
        scp.stop()
