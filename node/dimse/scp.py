"""The DIMSE service class provider: association policy, C-ECHO and C-STORE.

The handlers are thin (ARCHITECTURE rule 2): C-STORE checks the caller, hands the
received bytes to :class:`node.storage.Ingest` (durable write, catalog, work queue in
one transaction) and answers. Failures become DIMSE statuses here, in one place.

Association policy, checked when the A-ASSOCIATE-RQ arrives:

- the called AE title must be the node's (A-ASSOCIATE-RJ permanent, service user,
  reason 7 "called AE title not recognised");
- the calling AE title must be a configured source, from its bound host when one is
  set (reason 3 "calling AE title not recognised"), unless ``allow_any_source``;
- free disk space must be above the reserve (transient, service provider, reason 1
  "temporary congestion"); the maximum of simultaneous associations is pynetdicom's
  (transient, "local limit exceeded").
"""

from __future__ import annotations

import copy
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    QueryRetrievePresentationContexts,
)
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.status import Status
from pynetdicom.transport import ThreadedAssociationServer

from node.dimse import query_retrieve
from node.errors import IngestError
from node.runtime import Services
from node.storage import aes
from node.storage.aes import PermissionValues
from node.storage.files import free_bytes

__all__ = ["handle_echo", "handle_store", "start_dimse_server"]

log = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ (result, source, reason) per PS3.8 9.3.4
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_CONGESTION = (0x02, 0x03, 0x01)

#: PS3.7 C.4 general status "Refused: Not Authorized" (pynetdicom's ``Status`` names
#: only success, cancel, pending and move destination unknown; its status tables call
#: this one a failure)
STATUS_NOT_AUTHORIZED = 0x0124
MAX_PDU_SIZE = 4 * 1024 * 1024


def _calling_ae(event: evt.Event) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


def _resolve(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


def check_association(event: evt.Event, services: Services) -> None:
    """EVT_REQUESTED: reject callers the policy does not allow, with the proper reason."""
    assoc = event.assoc
    request = assoc.requestor.primitive
    assert request is not None  # EVT_REQUESTED fires once the A-ASSOCIATE-RQ is in
    calling = str(request.calling_ae_title).strip()
    called = str(request.called_ae_title).strip()
    address = assoc.requestor.address
    settings = services.settings.node
    reject: tuple[int, int, int] | None = None
    why = ""
    if called != settings.ae_title:
        reject, why = REJECT_CALLED_AE, f"called AE title {called!r} is not this node's"
    elif not settings.allow_any_source:
        source = aes.get_source(services.connections.get(), calling)
        if source is None:
            why = f"calling AE title {calling!r} is not a configured source"
            reject = REJECT_CALLING_AE
        elif source.host and _resolve(source.host) != address:
            reject, why = REJECT_CALLING_AE, (
                f"calling AE title {calling!r} is bound to host {source.host}, not {address}"
            )
    if reject is None:
        reserve = settings.free_space_reserve_mb * 1024 * 1024
        if free_bytes(settings.data_dir) < reserve:
            reject, why = REJECT_CONGESTION, "free disk space is below the configured reserve"
    if reject is not None:
        log.warning("association rejected calling=%s called=%s address=%s reason=%s",
                    calling, called, address, why)
        assoc.acse.send_reject(*reject)
        assoc.kill()  # as pynetdicom does: lets the DUL deliver the A-ASSOCIATE-RJ first
    else:
        log.info("association accepted calling=%s address=%s", calling, address)


def _permitted(event: evt.Event, services: Services, permission: PermissionValues) -> bool:
    if services.settings.node.allow_any_source:
        return True
    source = aes.get_source(services.connections.get(), _calling_ae(event))
    return source is not None and source.allows(permission)


def handle_echo(event: evt.Event, services: Services) -> int:
    if not _permitted(event, services, PermissionValues.ECHO):
        return STATUS_NOT_AUTHORIZED
    return Status.SUCCESS


def handle_store(event: evt.Event, services: Services) -> int | Dataset:
    """C-STORE: durable write, catalog, queue; success only once all three are done."""
    if not _permitted(event, services, PermissionValues.STORE):
        return _failure(STATUS_NOT_AUTHORIZED, "this AE title may not store here")
    request = cast(C_STORE, event.request)
    try:
        services.ingest.store(
            event.encoded_dataset(include_meta=True),
            source=_calling_ae(event),
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
        )
    except IngestError as exc:
        log.warning("store refused calling=%s status=0x%04X reason=%s",
                    _calling_ae(event), exc.status, exc)
        return _failure(exc.status, str(exc))
    return Status.SUCCESS


def _refused() -> Dataset:
    return _failure(STATUS_NOT_AUTHORIZED, "this AE title may not query or retrieve here")


def _guarded_find(event: evt.Event, services: Services
                  ) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    if not _permitted(event, services, PermissionValues.FIND):
        yield _refused(), None
        return
    yield from query_retrieve.handle_find(event, services)


def _guarded_get(event: evt.Event, services: Services) -> Iterator[object]:
    if not _permitted(event, services, PermissionValues.MOVE):
        yield 1  # C-GET's first yield is the number of sub-operations
        yield _refused(), None
        return
    yield from query_retrieve.handle_get(event, services)


def _guarded_move(event: evt.Event, services: Services) -> Iterator[object]:
    if not _permitted(event, services, PermissionValues.MOVE):
        yield None, None  # no destination for this caller: pynetdicom answers 0xA801
        return
    yield from query_retrieve.handle_move(event, services)


def build_ae(services: Services) -> AE:
    """The node's application entity, with every storage and Q/R context it offers."""
    settings = services.settings.node
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.max_associations
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout_s
    # A large announced maximum PDU lets senders (dcmtk, PACS) send a 512 KB CT slice in
    # one PDU instead of 32: pynetdicom's per-PDU cost dominates ingest otherwise.
    ae.maximum_pdu_size = MAX_PDU_SIZE
    ae.require_called_aet = True
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    for context in AllStoragePresentationContexts:
        # scp_role/scu_role let C-GET send stored instances back over the association
        ae.add_supported_context(
            cast(str, context.abstract_syntax), ALL_TRANSFER_SYNTAXES,
            scu_role=True, scp_role=True,
        )
    for context in QueryRetrievePresentationContexts:
        ae.add_supported_context(cast(str, context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    return ae


def _ssl_context(services: Services) -> ssl.SSLContext | None:
    tls = services.settings.node.tls
    if not tls.enabled:
        return None
    assert tls.cert_file is not None and tls.key_file is not None  # settings check both
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tls.ca_file)
    return context


class _Contexts(list[PresentationContext]):
    """The server's presentation contexts, copied for each association as pynetdicom
    does (``deepcopy``) but without copying each transfer syntax UID: they are
    immutable, and the generic deep copy of 171 contexts × 45 syntaxes costs 100-250 ms
    of Python per association, during which every other thread of the node waits."""

    def __deepcopy__(self, memo: dict[int, object]) -> list[PresentationContext]:
        out = []
        for context in self:
            fresh = copy.copy(context)
            fresh._transfer_syntax = list(context._transfer_syntax)
            out.append(fresh)
        return out


def start_dimse_server(services: Services) -> ThreadedAssociationServer:
    """Start listening (in pynetdicom's threads) and return the server to shut down."""
    settings = services.settings.node
    handlers: list[Any] = [
        (evt.EVT_REQUESTED, check_association, [services]),
        (evt.EVT_C_ECHO, handle_echo, [services]),
        (evt.EVT_C_STORE, handle_store, [services]),
        (evt.EVT_C_FIND, _guarded_find, [services]),
        (evt.EVT_C_GET, _guarded_get, [services]),
        (evt.EVT_C_MOVE, _guarded_move, [services]),
    ]
    server = cast(ThreadedAssociationServer, build_ae(services).start_server(
        (settings.host, settings.dimse_port),
        block=False,
        evt_handlers=handlers,
        ssl_context=_ssl_context(services),
    ))
    server.contexts = _Contexts(server.contexts)
    services.dimse_ready.set()
    log.info("listening ae_title=%s port=%d tls=%s", settings.ae_title, settings.dimse_port,
             settings.tls.enabled)
    return server
