"""A stored KOS sent by C-STORE to a configured destination, refusals as
:class:`node.errors.SendFailed` (the KOS stays stored on the node)."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom

from database import Connection
from node.errors import SendFailed, UnknownDestination
from node.storage.aes import Destination, get_destination

__all__ = ["destination_named", "send_kos"]

log = logging.getLogger(__name__)


def destination_named(conn: Connection, ae_title: str) -> Destination:
    """The configured destination ``ae_title``, or :class:`UnknownDestination` saying
    how to configure it."""
    target = get_destination(conn, ae_title)
    if target is None:
        raise UnknownDestination(
            f"destination {ae_title!r} is not configured: add it with "
            "'precedent ae destination add NAME HOST PORT' or POST /config/destination"
        )
    return target


def send_kos(path: Path, target: Destination, *, calling_ae: str, sop_instance_uid: str,
             series_instance_uid: str) -> str:
    """C-STORE the stored KOS file at ``path`` to ``target``; return its AE title."""
    from node.dimse.scu import DestinationUnreachable, send

    stored_kos = pydicom.dcmread(path)
    try:
        results = send(target, [stored_kos], calling_ae=calling_ae)
    except DestinationUnreachable as exc:
        raise SendFailed(f"the KOS was stored on this node but not sent: {exc}",
                         sop_instance_uid=sop_instance_uid,
                         series_instance_uid=series_instance_uid) from exc
    failed = [r for r in results if not r.ok]
    if failed:
        raise SendFailed(
            f"the KOS was stored on this node but {target.ae_title} refused it "
            f"(status 0x{failed[0].status:04X})",
            sop_instance_uid=sop_instance_uid, series_instance_uid=series_instance_uid)
    log.info("KOS sent sop=%s destination=%s", sop_instance_uid, target.ae_title)
    return target.ae_title
