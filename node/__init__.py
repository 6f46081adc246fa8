"""Precedent's running service. Importing it starts nothing: :mod:`node.supervisor`
builds, starts and stops the parts.

Along the data path: ``dimse/`` and ``web/`` (the protocol adapters), ``storage/``
(durable files and the catalog), the indexer (``indexer``, a package of its own),
``reporting/`` (reports from SR and PDF documents), ``retrieval/`` (similar cases),
``key_objects/`` (similar cases back to the PACS as KOS); two more ways in,
``backfill/`` (a PACS's priors, pulled inside the node) and ``image_collections/``
(labelled PNG/JPEG folders as Secondary Captures). Around them: ``supervisor``
(owns the data folder, starts and stops the parts; ``startup`` its listeners and what is
open to whom, ``indexing`` the model, worker and rebuild, ``operations`` what it does
for its admin API), ``data_folder`` (the lock, the admin token file), ``locations`` and
``settings`` (where the settings come from; the one settings object), ``cli``,
``commands/`` and ``admin_client`` (the ``precedent`` command, and its way to the
running node)."""

__all__: list[str] = []
