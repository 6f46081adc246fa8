"""Precedent's running service: DIMSE SCP/SCU, storage and catalog, REST, settings and
the ``precedent`` command. Importing it starts nothing: see :mod:`node.app`."""

__all__: list[str] = []
