"""The ``precedent`` command.

::

    precedent serve [--config FILE] [--data-dir DIR] [--ae-title AET] [--dimse-port N]
                    [--http-port N] [--host ADDR] [--model REF]
    precedent status [--json]
    precedent ae source add AET [--host HOST] [--permissions echo,find,move,store]
    precedent ae source remove|list …
    precedent ae destination add AET HOST PORT | remove AET | list | echo AET
    precedent index status [--json] | rebuild | import PATH…
    precedent reports import FILE.csv
    precedent eval --labels FILE.csv [--k 10]
    precedent viewer [--url URL] [--study UID | --folder DIR]

Every command finds the catalog through ``--data-dir`` or ``--config`` like ``serve``,
and works whether or not the node is running. Every command reads its settings the same
way (:func:`node.settings.load_settings`): defaults < ``--config`` file < the AE title
and port set over REST (kept in the catalog) < ``PRECEDENT_*`` environment < flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node.errors import NotFound, PrecedentError
from node.settings import Settings, catalog_notes, load_settings

__all__ = ["main"]

log = logging.getLogger("node.cli")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--data-dir", type=Path, help="where files and the catalog live")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="precedent", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the node (DIMSE, REST, indexer)")
    _common(serve)
    serve.add_argument("--ae-title")
    serve.add_argument("--host", help="address to listen on (DIMSE and HTTP)")
    serve.add_argument("--dimse-port", type=int)
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--model", help="open_clip model reference (hf-hub:…, local-dir:…)")
    serve.add_argument("--allow-any-source", action="store_true", default=None,
                       help="accept any calling AE title (try-outs only)")

    status = sub.add_parser("status", help="what the node holds and does")
    _common(status)
    status.add_argument("--json", action="store_true")

    ae = sub.add_parser("ae", help="AE-title administration").add_subparsers(
        dest="ae_kind", required=True)
    source = ae.add_parser("source", help="callers allowed to associate").add_subparsers(
        dest="action", required=True)
    p = source.add_parser("add")
    _common(p)
    p.add_argument("ae_title")
    p.add_argument("--host", help="only accept this AE title from this host")
    p.add_argument("--permissions", default="all", help="all, or a comma list of "
                   "echo,find,move,store (default all)")
    p = source.add_parser("remove")
    _common(p)
    p.add_argument("ae_title")
    p = source.add_parser("list")
    _common(p)
    p.add_argument("--json", action="store_true")

    dest = ae.add_parser("destination", help="where the node sends").add_subparsers(
        dest="action", required=True)
    p = dest.add_parser("add")
    _common(p)
    p.add_argument("ae_title")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p = dest.add_parser("remove")
    _common(p)
    p.add_argument("ae_title")
    p = dest.add_parser("list")
    _common(p)
    p.add_argument("--json", action="store_true")
    p = dest.add_parser("echo", help="C-ECHO a destination")
    _common(p)
    p.add_argument("ae_title")

    index = sub.add_parser("index", help="the embedding index").add_subparsers(
        dest="action", required=True)
    p = index.add_parser("status")
    _common(p)
    p.add_argument("--json", action="store_true")
    p = index.add_parser("rebuild", help="re-embed everything stored (the way to change "
                         "the model)")
    _common(p)
    p.add_argument("--model", help="the model to re-embed with (default: [model] name)")
    p = index.add_parser("import", help="store and index folders of DICOM files")
    _common(p)
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--model")
    p.add_argument("--no-index", action="store_true", help="store and queue only")

    reports = sub.add_parser("reports", help="report text and labels").add_subparsers(
        dest="action", required=True)
    p = reports.add_parser("import", help="attach reports from a CSV file")
    _common(p)
    p.add_argument("csv", type=Path)

    ev = sub.add_parser("eval", help="retrieval quality on a labelled set")
    _common(ev)
    ev.add_argument("--labels", type=Path, required=True)
    ev.add_argument("--k", type=int, default=10)

    viewer = sub.add_parser("viewer", help="the host viewer with the Find-similar panel")
    viewer.add_argument("--url", help="the node's base URL, e.g. http://localhost:8080")
    viewer.add_argument("--token")
    group = viewer.add_mutually_exclusive_group()
    group.add_argument("--study", help="Study Instance UID to open from the node")
    group.add_argument("--folder", type=Path, help="a local folder of DICOM files")
    return parser


def _node_config(db_path: Path) -> dict[str, str]:
    """The catalog's ``node_config`` (the AE title and port set over REST); nothing
    when there is no catalog yet."""
    if not db_path.exists():
        return {}
    from node.storage import aes, connect

    conn = connect(db_path)
    try:
        return aes.get_node_config(conn)
    finally:
        conn.close()


def _settings(args: argparse.Namespace) -> Settings:
    """Defaults < ``--config`` < catalog (``PUT /config/ae``) < environment < flags."""
    overrides: dict[str, dict[str, Any]] = {"node": {}, "http": {}, "model": {}}
    if getattr(args, "data_dir", None) is not None:
        overrides["node"]["data_dir"] = args.data_dir
    for flag, section, key in [
        ("ae_title", "node", "ae_title"), ("dimse_port", "node", "dimse_port"),
        ("host", "node", "host"), ("http_port", "http", "port"), ("host", "http", "host"),
        ("model", "model", "name"), ("allow_any_source", "node", "allow_any_source"),
    ]:
        value = getattr(args, flag, None)
        if value is not None:
            overrides[section][key] = value
    return load_settings(getattr(args, "config", None),
                         {k: v for k, v in overrides.items() if v}, catalog=_node_config)


def _print(data: Any, as_json: bool, table: str) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(table)


def _conn(settings: Settings) -> sqlite3.Connection:
    from node.storage import connect

    return connect(settings.db_path)


def cmd_serve(args: argparse.Namespace) -> int:
    from node.supervisor import Node

    settings = _settings(args)
    logging.basicConfig(level=settings.log_level.value,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import pydicom.config

    # pydicom's warnings on invalid values quote the value (a name sent as a UID) at
    # WARNING; the node keeps what it receives as received, so it does not validate it
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    for note in catalog_notes(settings):
        log.info("%s", note)
    Node(settings).serve_forever()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from node.status import offline_status

    settings = _settings(args)
    data = offline_status(settings)
    model = data["model"]
    lines = [
        f"node {data['ae_title']} (DIMSE {data['dimse_port']}, HTTP {data['http_port']}): "
        + ("running" if data["running"] else "not running"),
        f"data: {data['data_dir']}: {data['studies']} studies, {data['instances']} instances",
        "queue: " + ", ".join(f"{k} {v}" for k, v in data["queue"]["by_state"].items()),
        *(f"  failed: {n} × {why}" for why, n in data["queue"]["failed_reasons"].items()),
        f"model: {model['status']}" + (f": {model['reason']}" if model.get("reason") else ""),
        f"index built with: {data['index_model'] or '(nothing indexed yet)'}",
    ]
    _print(data, args.json, "\n".join(lines))
    return 0


def cmd_ae(args: argparse.Namespace) -> int:
    from node.storage import aes

    settings = _settings(args)
    conn = _conn(settings)
    if args.ae_kind == "source":
        if args.action == "add":
            s = aes.add_source(conn, args.ae_title, host=args.host,
                               permissions=aes.parse_permissions(args.permissions))
            print(f"source {s.ae_title} added ({','.join(sorted(p.value for p in s.permissions))})")
        elif args.action == "remove":
            aes.remove_source(conn, args.ae_title)
            print(f"source {args.ae_title} removed")
        else:
            items = aes.list_sources(conn)
            _print([s.as_json() for s in items], args.json, "\n".join(
                f"{s.ae_title:16} {s.host or '*':20} "
                f"{','.join(sorted(p.value for p in s.permissions))}"
                for s in items) or "no sources configured")
    else:
        if args.action == "add":
            d = aes.add_destination(conn, args.ae_title, host=args.host, port=args.port)
            print(f"destination {d.ae_title} added ({d.host}:{d.port})")
        elif args.action == "remove":
            aes.remove_destination(conn, args.ae_title)
            print(f"destination {args.ae_title} removed")
        elif args.action == "echo":
            from pynetdicom.status import Status

            from node.dimse.scu import echo

            dest = aes.get_destination(conn, args.ae_title)
            if dest is None:
                raise NotFound(f"destination AE title {args.ae_title!r} is not configured")
            status = echo(dest, calling_ae=settings.node.ae_title)
            print(f"C-ECHO {dest.ae_title}: status 0x{status:04X}")
            return 0 if status == Status.SUCCESS else 1
        else:
            dests = aes.list_destinations(conn)
            _print([d.as_json() for d in dests], args.json, "\n".join(
                f"{d.ae_title:16} {d.host}:{d.port}" for d in dests)
                or "no destinations configured")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from node import commands

    return commands.index(args, _settings(args))


def cmd_reports(args: argparse.Namespace) -> int:
    from node import commands

    return commands.reports_import(args, _settings(args))


def cmd_eval(args: argparse.Namespace) -> int:
    from node import commands

    return commands.evaluate(args, _settings(args))


def cmd_viewer(args: argparse.Namespace) -> int:
    import importlib

    # The viewer is an optional extra (PySide6) and stands apart from the node: it is
    # found at run time, never imported by the node's modules.
    try:
        viewer_main = importlib.import_module("viewer_plugin.host").main
    except ImportError as exc:
        print(f"precedent: the viewer needs the 'viewer' extra ({exc}); "
              "pip install 'precedent[viewer]'", file=sys.stderr)
        return 2
    argv: list[str] = []
    for flag in ("url", "token", "study", "folder"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag}", str(value)]
    return int(viewer_main(argv) or 0)


_COMMANDS = {"serve": cmd_serve, "status": cmd_status, "ae": cmd_ae, "index": cmd_index,
             "reports": cmd_reports, "eval": cmd_eval, "viewer": cmd_viewer}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except PrecedentError as exc:
        print(f"precedent: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"precedent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
