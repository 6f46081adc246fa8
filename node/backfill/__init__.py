"""Backfill: the priors a PACS holds, pulled into the node without hurting the PACS.

Along the way a backfill goes:

- :mod:`.request` — what an admin asks for (source, dates, modalities, via, window,
  rate, concurrency), checked;
- :mod:`.plan` — the plan in the catalog: the backfill, its date windows, its studies,
  each ``pending`` / ``moving`` / ``done`` / ``partial`` / ``failed`` (:mod:`.states`;
  tables in :mod:`._schema`, owned here);
- :mod:`.pacs` — what is asked of the PACS, whatever the protocol; :mod:`.dimse`
  (C-FIND, C-MOVE or C-GET) and :mod:`.dicomweb` (QIDO-RS, WADO-RS) ask it;
- :mod:`.study_pull` — one study: compare with the catalog, pull only what is missing;
- :mod:`.limits` — the time window and the rate;
- :mod:`.runner` — one backfill's worker threads (at most N associations), held by the
  window, the disk reserve and PACS outages;
- :mod:`.manager` — every backfill of the node, made and started by the supervisor
  (:mod:`node.supervisor`), on the node's one stop event;
- :mod:`.progress` — counts, rate, ETA and failures for ``backfill status``.

``precedent backfill …`` (:mod:`node.commands.backfill`) and the ``/admin/backfill``
routes (:mod:`node.web.backfill`) reach the manager through the running node's admin
API.

Backfilled instances carry the source ``BACKFILL:<id>``; their studies are indexed like
any other but never answered by the automatic KOS (:mod:`node.storage.sources`).

The package's ``__init__`` stays light (the REST routes and the command import it): the
manager, with the DIMSE and DICOMweb clients, is ``node.backfill.manager``.
"""

from node.backfill._schema import TABLES
from node.backfill.request import BackfillRequest, ViaValues
from node.backfill.states import JobStateValues, PlanStateValues, RetrieveModeValues

__all__ = [
    "TABLES",
    "BackfillRequest",
    "JobStateValues",
    "PlanStateValues",
    "RetrieveModeValues",
    "ViaValues",
]
