"""Model folders brought in offline: fetched from the hub with a manifest of hashes,
checked, or written as a try-out model; and a quick look at whether an ``hf-hub:``
model can be had at all before open_clip spends half a minute retrying.

- :func:`fetch`: BiomedCLIP's five files from its two Hugging Face repositories into one
  folder, with ``manifest.json`` (each file's repository, size and SHA-256). Run where
  the hub can be reached; copy the folder to the node; point ``[model] path`` at it.
- :func:`verify`: the folder's files against its manifest.
- :func:`write_tryout`: a small open_clip model with *random weights* from the config
  shipped in this package (``tryout_model.json``): it shows the whole path working,
  its similarities mean nothing (not for clinical use).
- :func:`check_available`: an ``hf-hub:`` reference is in the local Hugging Face cache,
  or the hub answers within seconds; otherwise one line saying how to bring it in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.embedder.loading import DEFAULT_MODEL, local_text_override
from indexer.errors import ModelUnavailable

__all__ = [
    "BIOMEDCLIP_FILES",
    "MANIFEST",
    "TRYOUT_LABEL",
    "Downloader",
    "Verified",
    "check_available",
    "fetch",
    "hub_endpoint",
    "verify",
    "write_tryout",
]

MANIFEST = "manifest.json"
TRYOUT_LABEL = "random weights: not for clinical use"
_TRYOUT_CONFIG = Path(__file__).with_name("tryout_model.json")
_HUB = "hf-hub:"
#: how long the hub gets to answer before a model is called unreachable
_PROBE_TIMEOUT_S = 5.0

#: (repository, file) of everything BiomedCLIP needs offline
BIOMEDCLIP_FILES: tuple[tuple[str, str], ...] = (
    ("microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "open_clip_config.json"),
    ("microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "open_clip_pytorch_model.bin"),
    ("microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract", "config.json"),
    ("microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract", "vocab.txt"),
    ("microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract", "tokenizer_config.json"),
)

#: downloads one file of a repository and returns where it is: ``(repo, filename,
#: endpoint) -> path`` (huggingface_hub's ``hf_hub_download`` by default)
Downloader = Callable[[str, str, str], str]


def hub_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The Hugging Face endpoint (``HF_ENDPOINT``, else https://huggingface.co)."""
    env = os.environ if environ is None else environ
    return (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _hf_download(repo: str, filename: str, endpoint: str) -> str:
    """huggingface_hub's download; its errors that are not ``OSError`` already (a file
    missing from the repository, a connection error) become one."""
    import httpx
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return str(hf_hub_download(repo, filename, endpoint=endpoint, etag_timeout=30))
    except (EntryNotFoundError, httpx.HTTPError) as exc:
        raise OSError(str(exc)) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(folder: Path, model: str, sources: Mapping[str, str],
                    **extra: Any) -> None:
    files = {name: {"repository": repo, "size": (folder / name).stat().st_size,
                    "sha256": _sha256(folder / name)} for name, repo in sources.items()}
    manifest = {"model": model, **extra, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def fetch(dest: Path, *, download: Downloader = _hf_download,
          endpoint: str | None = None,
          files: tuple[tuple[str, str], ...] = BIOMEDCLIP_FILES,
          on_file: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Download ``files`` into ``dest`` (made when missing) and write its manifest.

    Each file is downloaded whole before it is copied in; a failure raises
    :class:`ModelUnavailable` saying which file and why. Returns the manifest.
    """
    where = endpoint or hub_endpoint()
    dest.mkdir(parents=True, exist_ok=True)
    sources: dict[str, str] = {}
    for repo, name in files:
        if on_file is not None:
            on_file(repo, name)
        try:
            got = Path(download(repo, name, where))
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise ModelUnavailable(f"{name} of {repo} could not be downloaded from {where} "
                                   f"({type(exc).__name__}: {first})") from exc
        shutil.copyfile(got, dest / name)
        sources[name] = repo
    _write_manifest(dest, DEFAULT_MODEL, sources, endpoint=where)
    return dict(json.loads((dest / MANIFEST).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Verified:
    """What :func:`verify` found: the manifest's model and how many files matched."""

    model: str
    files: int
    tryout: bool


def verify(folder: Path) -> Verified:
    """Check every file of ``folder``'s manifest (present, same size, same SHA-256);
    :class:`ModelUnavailable` naming the first that is not."""
    if not folder.is_dir():
        raise ModelUnavailable(f"model folder {folder} does not exist")
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except FileNotFoundError:
        raise ModelUnavailable(f"model folder {folder} has no {MANIFEST} (make the folder with "
                               "`precedent model fetch` or `precedent model tryout`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(f"{path} is not a model manifest ({exc})") from None
    for name, entry in sorted(files.items()):
        file = folder / name
        if not file.is_file():
            raise ModelUnavailable(f"model folder {folder}: {name} is missing")
        if file.stat().st_size != int(entry["size"]) or _sha256(file) != entry["sha256"]:
            raise ModelUnavailable(f"model folder {folder}: {name} does not match its manifest "
                                   "(damaged or replaced; fetch it again)")
    return Verified(model=str(manifest.get("model", "")), files=len(files),
                    tryout=bool(manifest.get("tryout", False)))


def write_tryout(dest: Path, *, seed: int = 0) -> Path:
    """A ``local-dir:`` model folder with random weights from the shipped try-out config,
    its manifest and a README saying what it is (random weights: not for clinical use)."""
    import open_clip
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TRYOUT_CONFIG, dest / "open_clip_config.json")
    model_cfg = dict(json.loads(_TRYOUT_CONFIG.read_text(encoding="utf-8"))["model_cfg"])
    model_cfg.update(local_text_override(dest.resolve(), model_cfg))
    torch.manual_seed(seed)
    model: Any = open_clip.CLIP(**model_cfg)
    with tempfile.NamedTemporaryFile(dir=dest, delete=False, suffix=".tmp") as tmp:
        torch.save(model.state_dict(), tmp)
    os.chmod(tmp.name, 0o644)  # the node may run as another user
    os.replace(tmp.name, dest / "open_clip_pytorch_model.bin")
    (dest / "README.txt").write_text(
        f"Precedent try-out model: {TRYOUT_LABEL}.\nA small open_clip model whose weights are "
        "random: the node runs end to end with it, but its similar cases mean nothing.\n"
        "Use BiomedCLIP for real work (precedent model fetch).\n", encoding="utf-8")
    _write_manifest(dest, "tryout", {"open_clip_config.json": "precedent (try-out config)",
                                     "open_clip_pytorch_model.bin": "random"},
                    tryout=True, note=TRYOUT_LABEL)
    return dest


def check_available(name: str, *, environ: Mapping[str, str] | None = None,
                    timeout_s: float = _PROBE_TIMEOUT_S) -> None:
    """For an ``hf-hub:`` reference: return when the model is in the local Hugging Face
    cache or the hub answers; else :class:`ModelUnavailable` in one line, within
    ``timeout_s``. Other references are left to the loader."""
    if not name.startswith(_HUB):
        return
    repo = name[len(_HUB):]
    env = os.environ if environ is None else environ
    how = ("bring the model in offline: `precedent model fetch DIR` on a machine that "
           "reaches the hub, copy DIR to this one and set [model] path "
           "(PRECEDENT_MODEL__PATH) to it; or `precedent model tryout DIR` for a try-out")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, "open_clip_config.json"), str):
        return
    if env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise ModelUnavailable(f"model {name} is not in this machine's Hugging Face cache and "
                               f"HF_HUB_OFFLINE is set: {how}")
    endpoint = hub_endpoint(env)
    request = urllib.request.Request(f"{endpoint}/api/models/{repo}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # the hub answered; open_clip will say what it thinks of the repository
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelUnavailable(f"model {name} cannot be loaded: the Hugging Face hub "
                               f"({endpoint}) cannot be reached from this machine ({reason}) "
                               f"and the model is not in its cache: {how}") from None
