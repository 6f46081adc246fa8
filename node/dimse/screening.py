"""What every DIMSE-C request meets before pynetdicom's service class runs it.

pynetdicom hands a request straight to the service class its SOP Class UID names, and
aborts the whole association when that UID names none (a C-STORE announced as SOP Class
``31`` lost the rest of a ``dcmsend`` batch). Its C-MOVE handler protocol cannot answer
"Refused: Not Authorized" either, without first associating with the move destination.
:class:`ScreenedAssociation` answers such requests itself, and the association goes on:

=======  ==========================================================================
0x0122   Refused: SOP Class not supported. The request's Affected SOP Class UID is
         not one of the node's for that message (checked here, for every caller)
0x0124   Refused: Not Authorized. The :data:`Screen` (the node's policy,
         :func:`node.dimse.scp.screen_request`) says this caller may not; the
         Error Comment names the permission it lacks
=======  ==========================================================================

Statuses are pynetdicom's names (``pynetdicom.status``) where it has them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_GET, C_MOVE, C_STORE
from pynetdicom.service_class import (
    QueryRetrieveServiceClass,
    ServiceClass,
    StorageServiceClass,
    VerificationServiceClass,
)
from pynetdicom.sop_class import uid_to_service_class

__all__ = [
    "STATUS_NOT_AUTHORIZED",
    "STATUS_SOP_CLASS_NOT_SUPPORTED",
    "DimseRequest",
    "Refusal",
    "Screen",
    "ScreenedAssociation",
]

log = logging.getLogger(__name__)

#: PS3.7 C.4 general statuses. pynetdicom's ``Status`` names only success, cancel,
#: pending and move destination unknown; its ``GENERAL_STATUS`` table has these two
#: as failures with these meanings.
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_NOT_AUTHORIZED = 0x0124
#: PS3.4 C.4.1.1.4 "Unable to process" (and for C-STORE, "Cannot understand")
STATUS_UNABLE_TO_PROCESS = 0xC000

DimseRequest = C_ECHO | C_STORE | C_FIND | C_GET | C_MOVE

#: the service class each request type must name through its SOP Class UID
_SERVICE: dict[type[Any], type[ServiceClass]] = {
    C_ECHO: VerificationServiceClass,
    C_STORE: StorageServiceClass,
    C_FIND: QueryRetrieveServiceClass,
    C_GET: QueryRetrieveServiceClass,
    C_MOVE: QueryRetrieveServiceClass,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """The failure status a request is answered with, and its Error Comment (LO: 64
    characters at most; longer is cut)."""

    status: int
    comment: str


#: the node's policy: a refusal for this request on this association, or ``None``
Screen = Callable[[Association, DimseRequest], Refusal | None]


class ScreenedAssociation(Association):
    """An acceptor association that screens each DIMSE-C request (see the module)."""

    def __init__(self, ae: Any, mode: str, *, screen: Screen) -> None:
        super().__init__(ae, mode)
        self.screen = screen

    def _serve_request(self, msg: Any, context_id: int) -> None:
        if (isinstance(msg, C_ECHO | C_STORE | C_FIND | C_GET | C_MOVE)
                and msg.is_valid_request
                and any(cx.context_id == context_id for cx in self.accepted_contexts)):
            refusal = self._refusal(msg)
            if refusal is not None:
                self._answer(msg, context_id, refusal)
                return
        super()._serve_request(msg, context_id)

    def _refusal(self, msg: DimseRequest) -> Refusal | None:
        sop_class = str(msg.AffectedSOPClassUID or "")
        kind = type(msg).__name__.replace("_", "-")
        if uid_to_service_class(sop_class) is not _SERVICE[type(msg)]:
            log.warning("%s refused: SOP Class UID %r is not one of the node's for it "
                        "(calling=%s)", kind, sop_class[:64], self.requestor.ae_title)
            return Refusal(STATUS_SOP_CLASS_NOT_SUPPORTED,
                           f"SOP Class UID {sop_class[:24]!r} is not supported for {kind}")
        try:
            return self.screen(self, msg)
        except Exception as exc:  # the policy could not decide: refuse, do not abort
            log.error("%s refused: the request could not be screened (%s)", kind,
                      type(exc).__name__)
            log.debug("screening failed", exc_info=True)
            return Refusal(STATUS_UNABLE_TO_PROCESS, "the node cannot check this request")

    def _answer(self, msg: DimseRequest, context_id: int, refusal: Refusal) -> None:
        rsp: Any = type(msg)()
        rsp.MessageIDBeingRespondedTo = msg.MessageID
        rsp.AffectedSOPClassUID = msg.AffectedSOPClassUID
        if isinstance(msg, C_STORE):
            rsp.AffectedSOPInstanceUID = msg.AffectedSOPInstanceUID
        rsp.Status = refusal.status
        rsp.ErrorComment = refusal.comment.encode("ascii", "replace").decode("ascii")[:64]
        self.dimse.send_msg(rsp, context_id)
