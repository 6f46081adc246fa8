"""The DIMSE statuses the node answers, by name.

pynetdicom's :class:`~pynetdicom.status.Status` names success, pending, cancel and move
destination unknown; the others come from PS3.4 (service-specific) and PS3.7 Annex C
(general), and pynetdicom's status tables put each in the category given here
(:func:`pynetdicom.status.code_to_category`; a test holds them to it).
"""

from __future__ import annotations

from enum import IntEnum

from pynetdicom.status import Status

__all__ = ["DimseStatusValues"]


class DimseStatusValues(IntEnum):
    """Statuses of the node's C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE answers."""

    SUCCESS = Status.SUCCESS
    PENDING = Status.PENDING  #: a C-FIND match, a C-GET/C-MOVE sub-operation done
    CANCEL = Status.CANCEL  #: a C-CANCEL arrived
    MOVE_DESTINATION_UNKNOWN = Status.MOVE_DESTINATION_UNKNOWN  #: failure
    #: failure (PS3.7 C.4): the request's SOP Class UID is not one the node serves
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    #: failure (PS3.7 C.4): the calling AE title lacks the permission
    NOT_AUTHORIZED = 0x0124
    #: failure (PS3.4 C.4.1.1.4, B.2.3): the identifier or data set does not match
    #: the SOP class
    DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: failure (PS3.4 C.4.1.1.4 "unable to process", B.2.3 "cannot understand"): the
    #: node failed (its log says why)
    UNABLE_TO_PROCESS = 0xC000
    #: failure, unable to process: the catalog could not be read
    CATALOG_UNAVAILABLE = 0xC001
    #: failure, unable to process: a stored instance cannot be read back
    STORED_FILE_UNREADABLE = 0xC002
