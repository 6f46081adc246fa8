"""The DIMSE side: the service class provider (association policy, C-ECHO, C-STORE,
C-FIND, C-MOVE, C-GET) and the client used to send to destinations."""

from node.dimse.scp import start_dimse_server
from node.dimse.scu import DestinationUnreachable, SendResult, echo, send

__all__ = ["DestinationUnreachable", "SendResult", "echo", "send", "start_dimse_server"]
