"""Start-up's boundary with the machine: the listening sockets, their failures in one
line naming the setting and its value, and the lines that say what is open and to whom.

The supervisor binds the HTTP socket itself (uvicorn is handed the bound socket) so that
a taken port stops start-up before anything listens, instead of leaving a node running
DIMSE-only; a DIMSE port that cannot be bound closes the HTTP socket again.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path

from node.errors import StartupError
from node.settings import HttpSettings, NodeSettings

__all__ = ["bind_error", "bind_http", "client_url", "exposure_lines", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` can be reached from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_url(http: HttpSettings) -> str:
    """The HTTP base URL a client on this machine uses (a wildcard address becomes
    loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(http.host, http.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http.port}"


def bind_error(exc: OSError, *, host_setting: str, host: str, port_setting: str,
               port: int) -> StartupError:
    """One line for a listening socket that could not be bound."""
    if exc.errno == errno.EADDRINUSE:
        return StartupError(f"setting '{port_setting}' = {port}: the port is in use on {host} "
                            "(another program, or another node, listens there); stop it or "
                            "choose another port")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StartupError(f"setting '{port_setting}' = {port}: this user may not listen on "
                            "it (ports below 1024 need privileges); choose a port above 1023")
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return StartupError(f"setting '{host_setting}' = {host}: not an address of this "
                            "machine; use one of its addresses, 127.0.0.1 or 0.0.0.0")
    return StartupError(f"setting '{port_setting}' = {port} on {host}: cannot listen "
                        f"({exc.strerror or exc})")


def bind_http(http: HttpSettings) -> socket.socket:
    """The HTTP listening socket, bound and listening; a :class:`StartupError` naming
    the setting otherwise."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            http.host or None, http.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise bind_error(exc, host_setting="http.host", host=http.host,
                         port_setting="http.port", port=http.port) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise bind_error(exc, host_setting="http.host", host=http.host,
                         port_setting="http.port", port=http.port) from None
    sock.set_inheritable(True)
    return sock


def exposure_lines(node: NodeSettings, http: HttpSettings, *, sources: list[str],
                   admin_token_file: Path | None) -> list[str]:
    """What is open, and to whom: one line for DIMSE, one for HTTP."""
    if node.allow_any_source:
        callers = "any calling AE title (node.allow_any_source: for try-outs only)"
    elif sources:
        callers = f"the {len(sources)} configured sources ({', '.join(sources[:8])}" + (
            ", …)" if len(sources) > 8 else ")")
    else:
        callers = ("nobody yet: add the PACS with `precedent ae source add AET --host HOST`")
    tls = ", TLS" if node.tls.enabled else ""
    dimse = f"DIMSE: AE title {node.ae_title} on {node.host}:{node.dimse_port}{tls}; callers: " \
        + callers
    reach = "this machine only" if is_loopback(http.host) else "every machine that can reach it"
    reading = ("open to " + reach) if http.read_token is None else "with the read token"
    admin = (f"admin token in {admin_token_file} (readable by its owner only)"
             if admin_token_file is not None else "admin token from [http] admin_token")
    where = f"http://{http.host}:{http.port}" if ":" not in http.host \
        else f"http://[{http.host}]:{http.port}"
    return [dimse, f"HTTP: listening on {where} ({reach}); reading: {reading}; "
                   f"/config, /admin and DELETE: {admin}"]
