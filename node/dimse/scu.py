"""The node as a service class user: C-ECHO and C-STORE to configured destinations."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

from node.errors import PrecedentError
from node.storage.aes import Destination

__all__ = ["NO_STATUS", "DestinationUnreachable", "SendResult", "echo", "send"]

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
