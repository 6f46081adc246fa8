"""The DIMSE side: the service class provider (association policy, C-ECHO, C-STORE,
C-FIND, C-MOVE, C-GET) and the client used to send to destinations."""
