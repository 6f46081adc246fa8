"""``precedent model``: bring the model in offline.

- ``fetch DIR`` (on a machine that reaches the Hugging Face hub, or ``HF_ENDPOINT``):
  BiomedCLIP's five files from its two repositories into DIR, with ``manifest.json``.
- ``check DIR``: the files against the manifest, then the model loaded as the node would
  load it, and the identity the index will record.
- ``tryout DIR``: a small model with random weights (not for clinical use) that lets a
  newcomer see the whole path work before the real weights are there.

Point ``[model] path`` (``PRECEDENT_MODEL__PATH``) at DIR; a running node that has no
model picks the folder up within seconds, without a restart.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from node.commands._common import Subcommands, note

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    group = commands.add_parser("model", help="bring the model in offline: fetch, check, "
                                "try-out", description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(run=run)
    model = group.add_subparsers(dest="action", required=True)
    p = model.add_parser("fetch", help="download BiomedCLIP's files into a folder")
    p.add_argument("dir", type=Path, help="the folder to fill (made when missing)")
    p.add_argument("--endpoint", help="the Hugging Face endpoint (default: HF_ENDPOINT, "
                   "else https://huggingface.co)")
    p = model.add_parser("check", help="verify a model folder and print its identity")
    p.add_argument("dir", type=Path)
    p = model.add_parser("tryout", help="write a small random-weight model (not for "
                         "clinical use) to try the node without the real weights")
    p.add_argument("dir", type=Path)


def _fetch(folder: Path, endpoint: str | None) -> int:
    from indexer.model_files import fetch

    manifest = fetch(folder, endpoint=endpoint,
                     on_file=lambda repo, name: note(f"fetching {name} from {repo}"))
    size = sum(int(f["size"]) for f in manifest["files"].values())
    print(f"model folder {folder}: {len(manifest['files'])} files, {size / 1e6:.1f} MB, "
          f"hashes in {folder / 'manifest.json'}")
    print(f"copy the folder to the node and set [model] path = \"{folder}\" "
          "(or PRECEDENT_MODEL__PATH); check it there with `precedent model check`")
    return 0


def _check(folder: Path) -> int:
    from indexer.embedder import load_embedder
    from indexer.errors import ModelUnavailable
    from indexer.model_files import MANIFEST, TRYOUT_LABEL, verify

    tryout = False
    try:
        verified = verify(folder)
        tryout = verified.tryout
        print(f"model folder {folder}: {verified.files} files match {MANIFEST}")
    except ModelUnavailable:
        if (folder / MANIFEST).exists() or not folder.is_dir():
            raise
        print(f"model folder {folder}: no {MANIFEST}, the files are not verified")
    embedder = load_embedder(path=folder, device="cpu", precision="fp32", batch_size=1)
    label = f" ({TRYOUT_LABEL})" if tryout else ""
    print(f"loads: identity {embedder.identity}, {embedder.dim} dimensions{label}")
    print(f"the index records that identity when the node runs with [model] path = "
          f"\"{folder}\"")
    return 0


def _tryout(folder: Path) -> int:
    from indexer.model_files import TRYOUT_LABEL, write_tryout

    write_tryout(folder)
    print(f"try-out model written to {folder} ({TRYOUT_LABEL})")
    print(f"use it with: precedent serve --model local-dir:{folder}  "
          f"(or [model] path = \"{folder}\")")
    return 0


def run(args: argparse.Namespace) -> int:
    folder = args.dir.expanduser().absolute()
    if args.action == "fetch":
        return _fetch(folder, args.endpoint)
    if args.action == "check":
        return _check(folder)
    return _tryout(folder)
