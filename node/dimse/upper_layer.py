"""The DICOM Upper Layer (PS3.8) as the node runs it: pynetdicom's association server
with three guards against slow or hostile peers.

pynetdicom reads a PDU with a blocking ``recv`` that has no timeout: a peer that sends
the first bytes of a PDU and then nothing holds its association thread, and with it a
slot of ``maximum_associations``, for as long as it keeps the socket open. Its ARTIM and
idle timers cannot fire while that thread is blocked. So:

1. **A deadline for every PDU** (:class:`GuardedSocket`): from the PDU's first byte to
   its last, at most ``timeout_s`` seconds; past it the connection is closed and
   pynetdicom sees a transport close (A-P-ABORT). Every write has ``timeout_s`` too.
2. **No absurd PDU lengths**: a PDU announcing more than the node's maximum PDU length
   (plus the 6-byte header, for senders that count it; 64 MiB when the AE announces no
   maximum) is answered with an A-ABORT (service provider, invalid PDU parameter value,
   PS3.8 9.3.8) and the connection is closed before anything more is read.
3. **A budget per remote host for associations not yet established**
   (:class:`NodeAssociationServer`): a connection counts against
   ``node.max_pending_per_host`` from ``accept`` (TLS handshake included, itself under
   the deadline) until the A-ASSOCIATE-AC; beyond it the new connection is closed at
   once. Only established associations count against ``node.max_associations``
   (checked by the association policy in :mod:`node.dimse.scp`), so one host cannot
   lock out the PACS by opening connections it never completes.

The subclasses replace pynetdicom's ``RequestHandler._create_association`` (to give
each association this socket and :class:`~node.dimse.screening.ScreenedAssociation`)
and move the TLS handshake out of the accepting thread, where pynetdicom does it
without a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import Counter
from copy import copy
from datetime import datetime
from typing import Any, cast

from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import (
    AddressInformation,
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

from node.dimse.screening import Screen, ScreenedAssociation

__all__ = ["GuardedSocket", "NodeAssociationServer", "NodeRequestHandler"]

log = logging.getLogger(__name__)

_HEADER = 6  # PDU type, reserved, 4-byte length (PS3.8 9.3.1)
_PDU_TYPES = frozenset(range(0x01, 0x08))
#: the PDU length accepted when the AE announces no maximum (``maximum_pdu_size = 0``)
_UNLIMITED_PDU = 64 * 1024 * 1024
#: A-ABORT PDU, source 2 (service provider), reason 6 (invalid PDU parameter value)
_ABORT_INVALID_PARAMETER = bytes([0x07, 0x00, 0, 0, 0, 4, 0, 0, 0x02, 0x06])


class GuardedSocket(AssociationSocket):
    """An :class:`AssociationSocket` whose PDU reads have a deadline and a length limit.

    pynetdicom's DUL reads each PDU with two calls, once data is waiting: ``recv(6)``
    for the header, then ``recv(length)`` for the rest. The first starts the PDU's
    deadline, the second ends it. Short reads stand for a closed connection, as in
    pynetdicom's own socket.
    """

    def __init__(self, assoc: Association, client_socket: socket.socket, *,
                 timeout: float, max_pdu_length: int) -> None:
        super().__init__(assoc, client_socket=client_socket)
        self.timeout = timeout
        self.max_pdu_length = max_pdu_length
        self._deadline: float | None = None
        self._closed_by_us = False
        client_socket.settimeout(timeout)  # bounds every send; reads set their own

    def recv(self, nr_bytes: int) -> bytearray:
        if self._closed_by_us:
            return bytearray()
        if self._deadline is None:  # the header: a new PDU starts
            self._deadline = time.monotonic() + self.timeout
            data = self._read(nr_bytes)
            if nr_bytes != _HEADER or len(data) != _HEADER or data[0] not in _PDU_TYPES:
                self._deadline = None  # pynetdicom reads no more of this PDU
                return data
            (length,) = struct.unpack_from(">L", data, 2)
            if length > self.max_pdu_length:
                self._refuse_length(data[0], length)
            return data
        data = self._read(nr_bytes)
        self._deadline = None
        return data

    def _read(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        buffer = bytearray(nr_bytes)
        got = 0
        assert self._deadline is not None
        with memoryview(buffer) as view:
            while got < nr_bytes and sock is not None:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    self._expire(got, nr_bytes)
                    break
                try:
                    sock.settimeout(remaining)
                    count = sock.recv_into(view[got:], nr_bytes - got)
                except TimeoutError:
                    self._expire(got, nr_bytes)
                    break
                except OSError:
                    break  # reset or closed: pynetdicom sees the short read
                if count == 0:
                    break  # the peer closed the connection
                got += count
        if sock is not None:
            with contextlib.suppress(OSError):  # closed meanwhile by pynetdicom
                sock.settimeout(self.timeout)
        del buffer[got:]
        return buffer

    def _peer(self) -> str:
        info = self.assoc.requestor.address_info
        return f"{info.address}:{info.port}" if info is not None else "?"

    def _expire(self, got: int, wanted: int) -> None:
        log.warning("connection from %s closed: a PDU was not complete within %.0f s "
                    "(%d of %d bytes of this read); timeout_s bounds every PDU",
                    self._peer(), self.timeout, got, wanted)
        self._close_now()

    def _refuse_length(self, pdu_type: int, length: int) -> None:
        log.warning("connection from %s aborted: PDU type 0x%02X announces %d bytes, over "
                    "the maximum of %d", self._peer(), pdu_type, length, self.max_pdu_length)
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.sendall(_ABORT_INVALID_PARAMETER)
        self._close_now()

    def _close_now(self) -> None:
        """Shut the connection down; pynetdicom's next read sees it closed."""
        self._closed_by_us = True
        self._deadline = None
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RDWR)


def _copy_contexts(contexts: list[PresentationContext]) -> list[PresentationContext]:
    """Each association's own copy of the node's presentation contexts, as pynetdicom's
    ``deepcopy`` gives, but sharing the transfer syntax UIDs (immutable): the deep copy
    of 171 contexts × 45 syntaxes costs 100-250 ms of Python per association, during
    which every other thread of the node (the REST requests) waits for the GIL."""
    out = []
    for context in contexts:
        fresh = copy(context)
        fresh._transfer_syntax = list(context._transfer_syntax)
        out.append(fresh)
    return out


class NodeRequestHandler(RequestHandler):
    """Handles one accepted connection: the per-host budget, the TLS handshake (under
    the deadline), then an association with a :class:`GuardedSocket`."""

    server: NodeAssociationServer

    def handle(self) -> None:
        server = self.server
        host = str(self.client_address[0])
        if not server.admit(host):
            server.shutdown_request(self.request)
            return
        counted = True
        try:
            if server.ssl_context is not None and not self._handshake(server.ssl_context):
                return
            with server.budget_lock:
                assoc = self._create_association()
                evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
                assoc.start()
                server.release_handshake(host)  # from now on its thread counts
                counted = False
        finally:
            if counted:
                with server.budget_lock:
                    server.release_handshake(host)

    def _handshake(self, context: ssl.SSLContext) -> bool:
        sock: socket.socket = self.request
        sock.settimeout(self.server.pdu_timeout)
        try:
            self.request = context.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS handshake with %s failed: %s", self.client_address[0],
                        type(exc).__name__)
            self.server.shutdown_request(sock)
            return False
        return True

    def _create_association(self) -> Association:
        """As pynetdicom's, with the node's association class and socket."""
        server = self.server
        assoc = ScreenedAssociation(self.ae, MODE_ACCEPTOR, screen=server.screen)
        assoc._server = server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        limit = self.ae.maximum_pdu_size or _UNLIMITED_PDU
        sock = GuardedSocket(assoc, self.request, timeout=server.pdu_timeout,
                             max_pdu_length=limit + _HEADER)
        assoc.set_socket(sock)
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = _copy_contexts(server.contexts)
        assoc.requestor.address_info = self.remote
        for event, bound in server._handlers.items():
            if event.is_intervention and bound:
                assoc.bind(event, *cast(tuple[Any, Any], bound))
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in cast(list[tuple[Any, Any]], bound):
                    assoc.bind(event, handler, args)
        return assoc


def _pending(assoc: Association) -> bool:
    """Alive and not yet through association negotiation."""
    return assoc.is_alive() and not (assoc.is_established or assoc.is_released
                                     or assoc.is_aborted or assoc.is_rejected)


class NodeAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the node's request handler and budgets.

    Made with ``ae.make_server(..., server_class=NodeAssociationServer,
    request_handler=NodeRequestHandler, screen=…, pdu_timeout=…, pending_per_host=…)``;
    ``serve_forever`` runs in a thread the caller starts (as ``AE.start_server`` does).
    """

    def __init__(self, *args: Any, screen: Screen, pdu_timeout: float,
                 pending_per_host: int, **kwargs: Any) -> None:
        if pdu_timeout <= 0:
            raise ValueError("pdu_timeout must be positive")
        if pending_per_host < 1:
            raise ValueError("pending_per_host must be at least 1")
        self.screen = screen
        self.pdu_timeout = pdu_timeout
        self.pending_per_host = pending_per_host
        self.budget_lock = threading.Lock()
        self._handshaking: Counter[str] = Counter()
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept only: the TLS handshake happens in the connection's own thread."""
        assert self.socket is not None
        client_socket, address = self.socket.accept()
        return client_socket, address

    def pending(self, host: str) -> int:
        """Connections from ``host`` that have not reached A-ASSOCIATE-AC."""
        return self._handshaking[host] + sum(
            1 for assoc in self.active_associations
            if _pending(assoc) and _address(assoc) == host)

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host``, or refuse it over the budget."""
        with self.budget_lock:
            count = self.pending(host)
            if count >= self.pending_per_host:
                log.warning("connection from %s refused: %d connections from this host "
                            "have not completed association negotiation "
                            "(node.max_pending_per_host = %d)", host, count,
                            self.pending_per_host)
                return False
            self._handshaking[host] += 1
            return True

    def release_handshake(self, host: str) -> None:
        """The connection from ``host`` no longer counts as handshaking (call it with
        :attr:`budget_lock` held)."""
        self._handshaking[host] -= 1
        if self._handshaking[host] <= 0:
            del self._handshaking[host]

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket. (pynetdicom's would also
        remove the server from its AE's list, where only ``start_server`` puts it.)"""
        socketserver.BaseServer.shutdown(self)
        self.server_close()


def _address(assoc: Association) -> str | None:
    info: AddressInformation | None = assoc.requestor.address_info
    return None if info is None else info.address
