"""The DIMSE service class provider: association policy, request screening, C-ECHO and
C-STORE (C-FIND, C-MOVE and C-GET are in :mod:`node.dimse.query_retrieve`).

The handlers are thin: C-STORE hands the received bytes to
:class:`node.storage.Ingest` (checks, durable write, catalog, work queue) and answers.
Failures become DIMSE statuses here, in one place; a handler never raises into
pynetdicom (which would log the exception, values included, and for some services
abort the association).

Association policy, checked when the A-ASSOCIATE-RQ arrives:

- the called AE title must be the node's (A-ASSOCIATE-RJ permanent, service user,
  reason 7 "called AE title not recognised");
- the calling AE title must be a configured source, from its bound host when one is
  set (reason 3 "calling AE title not recognised"), unless ``allow_any_source``;
- free disk space must be above the reserve (transient, service provider, reason 1
  "temporary congestion");
- at most ``max_associations`` established associations (transient, service provider,
  reason 2 "local limit exceeded"). Connections still negotiating count against
  ``max_pending_per_host`` instead (:mod:`node.dimse.upper_layer`).

Request screening (:func:`screen_request`, applied by
:class:`~node.dimse.screening.ScreenedAssociation` before the service runs): each
service needs its permission (``echo``, ``store``, ``find``, ``get``, ``move``);
without it the answer is 0x0124 Refused: Not Authorized, naming the permission.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from datetime import datetime
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_GET, C_MOVE, C_STORE
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    QueryRetrievePresentationContexts,
)
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.utils import make_target

from node.dimse import query_retrieve
from node.dimse._logging import configure_pynetdicom_logging
from node.dimse.screening import DimseRequest, Refusal, Screen
from node.dimse.status_codes import DimseStatusValues
from node.dimse.upper_layer import NodeAssociationServer, NodeRequestHandler
from node.errors import IngestError
from node.runtime import Services
from node.storage import aes
from node.storage.aes import PermissionValues
from node.storage.files import free_bytes

__all__ = ["check_association", "handle_echo", "handle_store", "screen_request",
           "start_dimse_server"]

log = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ (result, source, reason) per PS3.8 9.3.4
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_CONGESTION = (0x02, 0x03, 0x01)
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)
MAX_PDU_SIZE = 4 * 1024 * 1024
#: pynetdicom's own limit counts connections still negotiating too; the node counts
#: established associations itself (check_association), so pynetdicom's is set aside
_PYNETDICOM_LIMIT = 1_000_000

#: the permission each request needs, and what the refusal says it may not do
_PERMISSIONS: dict[type[Any], tuple[PermissionValues, str]] = {
    C_ECHO: (PermissionValues.ECHO, "echo"),
    C_STORE: (PermissionValues.STORE, "store"),
    C_FIND: (PermissionValues.FIND, "query"),
    C_GET: (PermissionValues.GET, "use C-GET"),
    C_MOVE: (PermissionValues.MOVE, "use C-MOVE"),
}


def _calling_ae(event: evt.Event) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _failure(status: int, comment: str) -> Dataset:
    """A status data set; the Error Comment is LO in the command set's default
    character repertoire: ASCII, at most 64 characters."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment.encode("ascii", "replace").decode("ascii")[:64]
    return ds


def _resolve(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


def _established(assoc: Association) -> int:
    """Established acceptor associations of the node's AE, this one excluded."""
    return sum(1 for a in assoc.ae.active_associations
               if a.is_acceptor and a.is_established and a is not assoc)


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
    if reject is None and _established(assoc) >= settings.max_associations:
        reject, why = REJECT_LOCAL_LIMIT, (
            f"{settings.max_associations} associations are established "
            "(node.max_associations)")
    if reject is not None:
        log.warning("association rejected calling=%s called=%s address=%s reason=%s",
                    calling, called, address, why)
        assoc.acse.send_reject(*reject)
        assoc.kill()  # as pynetdicom does: lets the DUL deliver the A-ASSOCIATE-RJ first
    else:
        log.info("association accepted calling=%s address=%s", calling, address)


def screen_request(services: Services) -> Screen:
    """The node's request policy: each service needs its permission (see the module)."""

    def screen(assoc: Association, request: DimseRequest) -> Refusal | None:
        if services.settings.node.allow_any_source:
            return None
        permission, verb = _PERMISSIONS[type(request)]
        calling = str(assoc.requestor.ae_title).strip()
        source = aes.get_source(services.connections.get(), calling)
        if source is not None and source.allows(permission):
            return None
        log.warning("%s refused: calling AE title %s lacks the %s permission",
                    type(request).__name__.replace("_", "-"), calling, permission.value)
        return Refusal(DimseStatusValues.NOT_AUTHORIZED,
                       f"this AE title may not {verb} here: no {permission.value} "
                       "permission")

    return screen


def handle_echo(event: evt.Event, services: Services) -> int:
    """C-ECHO (the caller's permission was screened before)."""
    return int(DimseStatusValues.SUCCESS)


def handle_store(event: evt.Event, services: Services) -> int | Dataset:
    """C-STORE: checks, durable write, catalog, queue; success only once all are done.
    Never raises: an unexpected failure is logged without values and answered 0xC000."""
    request = cast(C_STORE, event.request)
    calling = _calling_ae(event)
    try:
        services.ingest.store(
            event.encoded_dataset(include_meta=True),
            source=calling,
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
        )
    except IngestError as exc:
        log.warning("store refused calling=%s instance=%s status=0x%04X reason=%s",
                    calling, request.AffectedSOPInstanceUID, exc.status, exc)
        return _failure(exc.status, str(exc))
    except Exception as exc:
        log.error("store failed calling=%s instance=%s: %s (details at debug level)",
                  calling, request.AffectedSOPInstanceUID, type(exc).__name__)
        log.debug("store failed", exc_info=True)
        return _failure(DimseStatusValues.UNABLE_TO_PROCESS,
                        f"the node failed to store this instance ({type(exc).__name__})")
    return int(DimseStatusValues.SUCCESS)


def build_ae(services: Services) -> AE:
    """The node's application entity, with every storage and Q/R context it offers."""
    settings = services.settings.node
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = _PYNETDICOM_LIMIT
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


def start_dimse_server(services: Services) -> NodeAssociationServer:
    """Start listening (in pynetdicom's threads) and return the server to shut down."""
    configure_pynetdicom_logging()
    settings = services.settings.node
    handlers: list[Any] = [
        (evt.EVT_REQUESTED, check_association, [services]),
        (evt.EVT_C_ECHO, handle_echo, [services]),
        (evt.EVT_C_STORE, handle_store, [services]),
        (evt.EVT_C_FIND, query_retrieve.handle_find, [services]),
        (evt.EVT_C_GET, query_retrieve.handle_get, [services]),
        (evt.EVT_C_MOVE, query_retrieve.handle_move, [services]),
    ]
    server = cast(NodeAssociationServer, build_ae(services).make_server(
        (settings.host, settings.dimse_port),
        ssl_context=_ssl_context(services),
        evt_handlers=handlers,
        server_class=NodeAssociationServer,
        request_handler=NodeRequestHandler,
        screen=screen_request(services),
        pdu_timeout=settings.timeout_s,
        pending_per_host=settings.max_pending_per_host,
    ))
    thread = threading.Thread(target=make_target(server.serve_forever), daemon=True,
                              name=f"AcceptorServer@{datetime.now():%Y%m%d%H%M%S}")
    thread.start()
    services.dimse_ready.set()
    log.info("listening ae_title=%s port=%d tls=%s", settings.ae_title, settings.dimse_port,
             settings.tls.enabled)
    return server
