"""Precedent's running service. Importing it starts nothing: :mod:`node.supervisor`
builds, starts and stops the parts.

Along the data path: ``dimse/`` and ``web/`` (the protocol adapters), ``storage/``
(durable files and the catalog), the indexer (``indexer``, a package of its own),
``reporting/`` (reports from SR and PDF documents), ``retrieval/`` (similar cases),
``key_objects/`` (similar cases back to the PACS as KOS); ``settings`` (the one
settings object), ``cli`` (the ``precedent`` command)."""

__all__: list[str] = []
