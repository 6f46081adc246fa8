"""The node as a service class user, towards configured destinations: C-ECHO, C-STORE
(:func:`send`), and Study Root query/retrieve (:func:`open_query_retrieve`: C-FIND, then
C-MOVE to the node's own AE title or C-GET, on one association), which the backfill uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, cast

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

from node.errors import PrecedentError
from node.storage.aes import Destination

__all__ = [
    "NO_STATUS",
    "DestinationUnreachable",
    "FindResult",
    "QueryRetrieve",
    "RetrieveResult",
    "RetrieveValues",
    "SendResult",
    "StoreHandler",
    "echo",
    "open_query_retrieve",
    "send",
]

log = logging.getLogger(__name__)

#: what we record when the peer sent no status (aborted, or timed out): not a DIMSE
#: status, and :func:`code_to_category` calls it unknown
NO_STATUS = 0xFFFF


class DestinationUnreachable(PrecedentError):
    """The destination did not accept an association (down, wrong port or AE title)."""

    http_status = 502
    title = "Destination unreachable"


@dataclass(frozen=True, slots=True)
class SendResult:
    sop_instance_uid: str
    status: int  #: the DIMSE status the destination answered (0x0000 success)

    @property
    def ok(self) -> bool:
        """Stored: success, or a warning (PS3.4 B.2.3: coercion, elements discarded…)."""
        return code_to_category(self.status) in (STATUS_SUCCESS, STATUS_WARNING)


def _ae(calling_ae: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    return ae


def echo(destination: Destination, *, calling_ae: str, timeout: float = 10.0) -> int:
    """C-ECHO ``destination``; return its status, or raise :class:`DestinationUnreachable`."""
    ae = _ae(calling_ae, timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise DestinationUnreachable(
            f"{destination.ae_title} at {destination.host}:{destination.port} did not accept "
            "an association: check that it runs, its port and that it knows this node's AE title"
        )
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else NO_STATUS
    finally:
        assoc.release()


def send(
    destination: Destination,
    instances: Iterable[Path | Dataset],
    *,
    calling_ae: str,
    timeout: float = 30.0,
) -> list[SendResult]:
    """C-STORE each instance (a stored file or a data set) to ``destination`` over one
    association, proposing each instance's own SOP class and transfer syntax."""
    datasets = [pydicom.dcmread(i) if isinstance(i, Path) else i for i in instances]
    if not datasets:
        return []
    ae = _ae(calling_ae, timeout)
    contexts = {(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets}
    for sop_class, syntax in sorted(contexts):
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise DestinationUnreachable(
            f"{destination.ae_title} at {destination.host}:{destination.port} did not accept "
            "an association for sending"
        )
    results: list[SendResult] = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status else NO_STATUS
            results.append(SendResult(str(ds.SOPInstanceUID), code))
    finally:
        assoc.release()
    log.info("sent destination=%s instances=%d failed=%d", destination.ae_title,
             len(results), sum(not r.ok for r in results))
    return results


# --------------------------------------------------------------------------- Q/R SCU

#: the transfer syntaxes a C-GET offers for the instances coming back: uncompressed and
#: the common compressed ones, so the PACS sends what it holds without transcoding
_GET_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
    JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless,
)
#: C-MOVE/C-GET response statuses that carry the sub-operation counts
_PENDING = (0xFF00, 0xFF01)


class RetrieveValues(str, Enum):
    """How instances come back from a PACS."""

    MOVE = "move"  #: C-MOVE to the node's own AE title (the PACS opens an association)
    GET = "get"  #: C-GET: the instances come back over the node's own association


@dataclass(frozen=True, slots=True)
class FindResult:
    """The answers of one C-FIND and its final status (0x0000: all of them)."""

    matches: list[Dataset]
    status: int

    @property
    def complete(self) -> bool:
        return self.status == 0x0000


@dataclass(frozen=True, slots=True)
class RetrieveResult:
    """The final answer of one C-MOVE or C-GET: its status and sub-operation counts."""

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    #: Failed SOP Instance UID List (0008,0058), when the PACS names them
    failed_sop_instance_uids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Every sub-operation succeeded (a warning counts: the instance was stored)."""
        return self.status == 0x0000 or (
            code_to_category(self.status) == STATUS_WARNING and self.failed == 0)


def _count(status: Dataset, keyword: str) -> int:
    value = status.get(keyword)
    return int(value) if value not in (None, "") else 0


def _failed_uids(identifier: Dataset | None) -> tuple[str, ...]:
    if identifier is None:
        return ()
    value = identifier.get("FailedSOPInstanceUIDList")
    if value in (None, ""):
        return ()
    items = value if isinstance(value, list | pydicom.multival.MultiValue) else [value]
    return tuple(str(v) for v in items if str(v))


class QueryRetrieve:
    """One Study Root Query/Retrieve association to a PACS: C-FIND, then C-MOVE or C-GET
    on the same association. Use it in ``with``; :meth:`abort` may be called from another
    thread to end an operation at once (the node stopping)."""

    def __init__(self, assoc: Association, destination: Destination) -> None:
        self._assoc = assoc
        self.destination = destination

    def __enter__(self) -> QueryRetrieve:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _lost(self, what: str) -> DestinationUnreachable:
        d = self.destination
        return DestinationUnreachable(
            f"{d.ae_title} at {d.host}:{d.port} ended the association (before or during "
            f"{what})")

    def _check(self, what: str) -> None:
        if not self._assoc.is_established:  # the peer went away while it was idle
            raise self._lost(what)

    def find(self, identifier: Dataset) -> FindResult:
        """C-FIND (Study Root): every match, and the final status."""
        self._check("a C-FIND")
        matches: list[Dataset] = []
        final = NO_STATUS
        for status, answer in self._assoc.send_c_find(
                identifier, StudyRootQueryRetrieveInformationModelFind):
            if not status or "Status" not in status:
                raise self._lost("a C-FIND")
            code = int(status.Status)
            if code in _PENDING:
                if answer is not None:
                    matches.append(answer)
            else:
                final = code
        return FindResult(matches, final)

    def _retrieve(self, responses: Iterator[tuple[Dataset, Dataset | None]],
                  what: str) -> RetrieveResult:
        last: RetrieveResult | None = None
        for status, identifier in responses:
            if not status or "Status" not in status:
                raise self._lost(what)
            code = int(status.Status)
            last = RetrieveResult(
                code, _count(status, "NumberOfCompletedSuboperations"),
                _count(status, "NumberOfFailedSuboperations"),
                _count(status, "NumberOfWarningSuboperations"),
                _failed_uids(identifier) if code not in _PENDING else (),
            )
        if last is None or last.status in _PENDING:
            raise self._lost(what)
        return last

    def move(self, identifier: Dataset, *, move_destination: str) -> RetrieveResult:
        """C-MOVE (Study Root) of what ``identifier`` names to ``move_destination``."""
        self._check("a C-MOVE")
        return self._retrieve(self._assoc.send_c_move(
            identifier, move_destination, StudyRootQueryRetrieveInformationModelMove),
            "a C-MOVE")

    def get(self, identifier: Dataset) -> RetrieveResult:
        """C-GET (Study Root): the instances come back over this association, each handed
        to the ``on_store`` the association was opened with."""
        self._check("a C-GET")
        return self._retrieve(self._assoc.send_c_get(
            identifier, StudyRootQueryRetrieveInformationModelGet), "a C-GET")

    def abort(self) -> None:
        """End the association at once (A-ABORT); safe from another thread. An operation
        waiting for the peer's next answer ends too (as :class:`DestinationUnreachable`)
        rather than at the DIMSE timeout: pynetdicom's wait is woken with its "no
        answer"."""
        if self._assoc.is_established:
            self._assoc.abort()
        self._assoc.dimse.msg_queue.put((None, None))

    def release(self) -> None:
        if self._assoc.is_established:
            self._assoc.release()


#: called with each instance a C-GET brings back (Part 10 bytes); answers its status
StoreHandler = Callable[[bytes], int]


def open_query_retrieve(destination: Destination, *, calling_ae: str,
                        retrieve: RetrieveValues | str = RetrieveValues.MOVE,
                        on_store: StoreHandler | None = None,
                        timeout: float = 60.0) -> QueryRetrieve:
    """Associate with ``destination`` for Study Root C-FIND and C-MOVE (or C-GET, whose
    instances go to ``on_store``); raise :class:`DestinationUnreachable` when it refuses."""
    retrieve = RetrieveValues(retrieve)
    ae = _ae(calling_ae, timeout)
    ae.maximum_pdu_size = 4 * 1024 * 1024
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    handlers: list[Any] = []
    roles: list[Any] = []
    if retrieve is RetrieveValues.MOVE:
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    else:
        if on_store is None:
            raise ValueError("on_store is required for C-GET")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for context in StoragePresentationContexts[:127]:
            uid = cast(str, context.abstract_syntax)
            ae.add_requested_context(uid, list(_GET_TRANSFER_SYNTAXES))
            roles.append(build_role(uid, scp_role=True))
        store = on_store

        def _handle_store(event: evt.Event) -> int:
            return store(event.encoded_dataset(include_meta=True))

        handlers.append((evt.EVT_C_STORE, _handle_store))
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                         ext_neg=roles or None, evt_handlers=handlers or None)
    if not assoc.is_established:
        raise DestinationUnreachable(
            f"{destination.ae_title} at {destination.host}:{destination.port} did not accept "
            "a query/retrieve association: check that it runs, its port, and that it "
            "knows this node's AE title"
        )
    return QueryRetrieve(assoc, destination)
