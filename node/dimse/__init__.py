"""The DIMSE side: the service class provider (the upper layer's guards against slow
and hostile peers, association policy, request screening, C-ECHO, C-STORE, C-FIND,
C-MOVE, C-GET; docs/dimse.md lists its answers) and the client used to send to
destinations."""

from node.dimse.scp import start_dimse_server
from node.dimse.scu import DestinationUnreachable, SendResult, echo, send

__all__ = ["DestinationUnreachable", "SendResult", "echo", "send", "start_dimse_server"]
