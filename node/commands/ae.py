"""``precedent ae``: the callers allowed to associate (sources) and where the node sends
(destinations)."""

from __future__ import annotations

import argparse

from node.commands._common import Subcommands, add_location_flags, print_data, settings_from
from node.errors import NotFound

__all__ = ["register", "run"]


def register(commands: Subcommands) -> None:
    group = commands.add_parser("ae", help="AE-title administration")
    group.set_defaults(run=run)
    ae = group.add_subparsers(dest="ae_kind", required=True)
    source = ae.add_parser("source", help="callers allowed to associate").add_subparsers(
        dest="action", required=True)
    p = source.add_parser("add")
    add_location_flags(p)
    p.add_argument("ae_title")
    p.add_argument("--host", help="only accept this AE title from this host")
    p.add_argument("--permissions", default="all", help="all, or a comma list of "
                   "echo,find,move,store (default all)")
    p = source.add_parser("remove")
    add_location_flags(p)
    p.add_argument("ae_title")
    p = source.add_parser("list")
    add_location_flags(p)
    p.add_argument("--json", action="store_true")

    dest = ae.add_parser("destination", help="where the node sends").add_subparsers(
        dest="action", required=True)
    p = dest.add_parser("add")
    add_location_flags(p)
    p.add_argument("ae_title")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p = dest.add_parser("remove")
    add_location_flags(p)
    p.add_argument("ae_title")
    p = dest.add_parser("list")
    add_location_flags(p)
    p.add_argument("--json", action="store_true")
    p = dest.add_parser("echo", help="C-ECHO a destination")
    add_location_flags(p)
    p.add_argument("ae_title")


def run(args: argparse.Namespace) -> int:
    from node.storage import aes, connect

    settings = settings_from(args)
    conn = connect(settings.db_path)
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
            print_data([s.as_json() for s in items], args.json, "\n".join(
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
            print_data([d.as_json() for d in dests], args.json, "\n".join(
                f"{d.ae_title:16} {d.host}:{d.port}" for d in dests)
                or "no destinations configured")
    return 0
