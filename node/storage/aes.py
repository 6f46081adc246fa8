"""AE-title administration: the sources allowed to call the node, the destinations it
sends to, and the node's own AE title and port, kept in the catalog."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from database import Connection, retrying
from node.errors import AlreadyExists, NotFound
from node.settings import validate_ae_title

__all__ = [
    "Destination",
    "PermissionValues",
    "Source",
    "add_destination",
    "add_source",
    "get_destination",
    "get_node_config",
    "get_source",
    "grant_get_to_movers",
    "list_destinations",
    "list_sources",
    "remove_destination",
    "remove_source",
    "set_node_config",
    "validate_dicomweb_url",
]


class PermissionValues(str, Enum):
    """What a source may ask of the node: one permission per DIMSE service.

    ``get`` came after the others: sources catalogued before it with ``move`` (which
    covered C-GET then) are given ``get`` once, by :func:`grant_get_to_movers`."""

    ECHO = "echo"
    FIND = "find"
    GET = "get"
    MOVE = "move"
    STORE = "store"


ALL_PERMISSIONS = frozenset(PermissionValues)


@dataclass(frozen=True, slots=True)
class Source:
    ae_title: str
    host: str | None
    permissions: frozenset[PermissionValues]

    def allows(self, permission: PermissionValues) -> bool:
        return permission in self.permissions

    def as_json(self) -> dict[str, Any]:
        return {
            "ae_title": self.ae_title,
            "host": self.host,
            "permissions": sorted(p.value for p in self.permissions),
        }


@dataclass(frozen=True, slots=True)
class Destination:
    ae_title: str
    host: str
    port: int
    #: the PACS's DICOMweb base URL (QIDO-RS, WADO-RS), for ``backfill --via dicomweb``
    dicomweb_url: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_permissions(value: str | list[str] | None) -> frozenset[PermissionValues]:
    """``"echo,find"`` or ``["echo"]`` to permissions; ``None`` or ``"all"`` is all."""
    if value is None or value == "all" or value == ["all"]:
        return ALL_PERMISSIONS
    items = value.split(",") if isinstance(value, str) else value
    try:
        return frozenset(PermissionValues(item.strip().lower()) for item in items if item.strip())
    except ValueError as exc:
        allowed = ", ".join(p.value for p in PermissionValues)
        raise ValueError(
            f"permissions {value!r} are not valid: use all or any of {allowed}"
        ) from exc


#: the ``catalog_migrations`` row saying :func:`grant_get_to_movers` ran on this catalog
_GET_MIGRATION = "ae_sources.get_granted_to_move"


def grant_get_to_movers(conn: Connection) -> None:
    """Once per catalog: give ``get`` to each source that has ``move``, so that C-GET
    keeps working for the sources configured when ``move`` covered it."""
    query = "SELECT 1 FROM catalog_migrations WHERE name = ?"
    if conn.execute(query, (_GET_MIGRATION,)).fetchone():
        return

    def grant(conn: Connection) -> None:
        if conn.execute(query, (_GET_MIGRATION,)).fetchone():
            return  # another connection did it meanwhile
        for row in conn.execute("SELECT ae_title, permissions FROM ae_sources").fetchall():
            names = {p.strip() for p in str(row["permissions"]).split(",") if p.strip()}
            if "move" in names and "get" not in names:
                conn.execute("UPDATE ae_sources SET permissions = ? WHERE ae_title = ?",
                             (",".join(sorted(names | {"get"})), row["ae_title"]))
        conn.execute("INSERT INTO catalog_migrations (name, applied_at) VALUES (?, ?)",
                     (_GET_MIGRATION, time.time()))

    retrying(conn, grant)  # processes starting together on one catalog collide


def _source(row: Any) -> Source:
    return Source(row["ae_title"], row["host"], parse_permissions(row["permissions"]))


def add_source(
    conn: Connection,
    ae_title: str,
    *,
    host: str | None = None,
    permissions: frozenset[PermissionValues] = ALL_PERMISSIONS,
) -> Source:
    validate_ae_title(ae_title)
    text = ",".join(sorted(p.value for p in permissions))
    added = conn.execute(
        "INSERT INTO ae_sources (ae_title, host, permissions) VALUES (?,?,?)"
        " ON CONFLICT (ae_title) DO NOTHING",
        (ae_title, host, text),
    ).rowcount
    if added == 0:
        raise AlreadyExists(f"source AE title {ae_title!r} is configured already")
    return Source(ae_title, host, permissions)


def remove_source(conn: Connection, ae_title: str) -> None:
    if conn.execute("DELETE FROM ae_sources WHERE ae_title = ?", (ae_title,)).rowcount == 0:
        raise NotFound(f"source AE title {ae_title!r} is not configured")


def get_source(conn: Connection, ae_title: str) -> Source | None:
    row = conn.execute("SELECT * FROM ae_sources WHERE ae_title = ?", (ae_title,)).fetchone()
    return _source(row) if row else None


def list_sources(conn: Connection) -> list[Source]:
    return [_source(r) for r in conn.execute("SELECT * FROM ae_sources ORDER BY ae_title")]


def validate_dicomweb_url(url: str) -> str:
    """``url`` without a trailing slash when it is an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"DICOMweb URL {url!r} is not an http:// or https:// URL "
                         "(e.g. http://pacs:8042/dicom-web)")
    return url.strip().rstrip("/")


def add_destination(
    conn: Connection, ae_title: str, *, host: str, port: int, dicomweb_url: str | None = None
) -> Destination:
    validate_ae_title(ae_title)
    if not host:
        raise ValueError("host must not be empty")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not a TCP port (1-65535)")
    url = validate_dicomweb_url(dicomweb_url) if dicomweb_url else None
    added = conn.execute(
        "INSERT INTO ae_destinations (ae_title, host, port, dicomweb_url) VALUES (?,?,?,?)"
        " ON CONFLICT (ae_title) DO NOTHING",
        (ae_title, host, port, url),
    ).rowcount
    if added == 0:
        raise AlreadyExists(f"destination AE title {ae_title!r} is configured already")
    return Destination(ae_title, host, port, url)


def remove_destination(conn: Connection, ae_title: str) -> None:
    if conn.execute("DELETE FROM ae_destinations WHERE ae_title = ?", (ae_title,)).rowcount == 0:
        raise NotFound(f"destination AE title {ae_title!r} is not configured")


def get_destination(conn: Connection, ae_title: str) -> Destination | None:
    row = conn.execute(
        "SELECT * FROM ae_destinations WHERE ae_title = ?", (ae_title,)
    ).fetchone()
    return _destination(row) if row else None


def _destination(row: Any) -> Destination:
    return Destination(row["ae_title"], row["host"], row["port"], row["dicomweb_url"])


def list_destinations(conn: Connection) -> list[Destination]:
    return [_destination(r)
            for r in conn.execute("SELECT * FROM ae_destinations ORDER BY ae_title")]


def get_node_config(conn: Connection) -> dict[str, str]:
    return {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM node_config")}


def set_node_config(conn: Connection, **values: str) -> None:
    """Set the node's own settings kept in the catalog, all of them or none."""
    retrying(conn, lambda conn: conn.executemany(
        "INSERT INTO node_config (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    ))
