"""``precedent ae``: the callers allowed to associate (sources) and where the node sends
(destinations). Changes go through the running node when it is up (its ``/config``
routes), else into the catalog with the data folder's lock held; lists read the catalog
(and make none)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from database import Connection
from node.commands._common import (
    Subcommands,
    add_location_flags,
    data_folder_writer,
    print_data,
    settings_from,
)
from node.errors import NotFound
from node.settings import Settings

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    group = commands.add_parser("ae", help="AE-title administration: sources and destinations")
    group.set_defaults(run=run)
    ae = group.add_subparsers(dest="ae_kind", required=True)
    source = ae.add_parser("source", help="callers allowed to associate").add_subparsers(
        dest="action", required=True)
    p = source.add_parser("add", help="allow a calling AE title")
    add_location_flags(p)
    p.add_argument("ae_title")
    p.add_argument("--host", help="only accept this AE title from this host")
    p.add_argument("--permissions", default="all", help="all, or a comma list of "
                   "echo,find,get,move,store (default all)")
    p = source.add_parser("remove", help="no longer allow a calling AE title")
    add_location_flags(p)
    p.add_argument("ae_title")
    p = source.add_parser("list", help="the allowed callers")
    add_location_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    dest = ae.add_parser("destination", help="where the node sends").add_subparsers(
        dest="action", required=True)
    p = dest.add_parser("add", help="a C-MOVE and KOS destination (and a PACS to backfill "
                        "from)")
    add_location_flags(p)
    p.add_argument("ae_title")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--dicomweb", metavar="URL", help="the PACS's DICOMweb base URL "
                   "(QIDO-RS/WADO-RS), for `precedent backfill start --via dicomweb`")
    p = dest.add_parser("remove", help="forget a destination")
    add_location_flags(p)
    p.add_argument("ae_title")
    p = dest.add_parser("list", help="the destinations")
    add_location_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = dest.add_parser("echo", help="C-ECHO a destination")
    add_location_flags(p)
    p.add_argument("ae_title")


def _read(settings: Settings) -> Connection | None:
    """The catalog, when there is one (reading makes none)."""
    if not settings.catalog_exists:
        return None
    from node.storage import connect

    return connect(settings.catalog_target)


def _write(args: argparse.Namespace, settings: Settings) -> int:
    from node.storage import aes, connect

    kind, aet = args.ae_kind, args.ae_title
    with data_folder_writer(settings, f"ae {kind} {args.action}") as node:
        if node is not None:  # the running node does it
            body: dict[str, Any] = {"ae_title": aet}
            if args.action == "add" and kind == "source":
                body |= {"host": args.host, "permissions": args.permissions}
            elif args.action == "add":
                body |= {"host": args.host, "port": args.port}
                if args.dicomweb:
                    body["dicomweb_url"] = args.dicomweb
            done = (node.request("POST", f"/config/{kind}", json=body) if args.action == "add"
                    else node.request("DELETE", f"/config/{kind}/{quote(aet, safe='')}"))
        else:
            conn = connect(settings.catalog_target)
            try:
                if kind == "source" and args.action == "add":
                    done = aes.add_source(conn, aet, host=args.host, permissions=aes.
                                          parse_permissions(args.permissions)).as_json()
                elif kind == "source":
                    aes.remove_source(conn, aet)
                elif args.action == "add":
                    done = aes.add_destination(conn, aet, host=args.host, port=args.port,
                                               dicomweb_url=args.dicomweb).as_json()
                else:
                    aes.remove_destination(conn, aet)
            finally:
                conn.close()
    if args.action == "remove":
        print(f"{kind} {aet} removed")
    elif kind == "source":
        print(f"source {aet} added ({','.join(done['permissions'])})")
    else:
        web = f", DICOMweb {done['dicomweb_url']}" if done.get("dicomweb_url") else ""
        print(f"destination {aet} added ({done['host']}:{done['port']}{web})")
    return 0


def run(args: argparse.Namespace) -> int:
    from node.storage import aes

    settings = settings_from(args)
    if args.action in ("add", "remove"):
        return _write(args, settings)
    conn = _read(settings)
    try:
        if args.ae_kind == "source":
            items = aes.list_sources(conn) if conn is not None else []
            print_data([s.as_json() for s in items], args.json, "\n".join(
                f"{s.ae_title:16} {s.host or '*':20} "
                f"{','.join(sorted(p.value for p in s.permissions))}"
                for s in items) or "no sources configured")
        elif args.action == "list":
            dests = aes.list_destinations(conn) if conn is not None else []
            print_data([d.as_json() for d in dests], args.json, "\n".join(
                f"{d.ae_title:16} {d.host}:{d.port}"
                + (f"  {d.dicomweb_url}" if d.dicomweb_url else "") for d in dests)
                or "no destinations configured")
        else:
            from pynetdicom.status import Status

            from node.dimse.scu import echo

            dest = aes.get_destination(conn, args.ae_title) if conn is not None else None
            if dest is None:
                raise NotFound(f"destination AE title {args.ae_title!r} is not configured")
            status = echo(dest, calling_ae=settings.node.ae_title)
            print(f"C-ECHO {dest.ae_title}: status 0x{status:04X}")
            return 0 if status == Status.SUCCESS else 1
    finally:
        if conn is not None:
            conn.close()
    return 0
