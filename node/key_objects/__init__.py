"""Similar cases back to the PACS as Key Object Selection documents (KOS).

Along the data path:

- :mod:`.document` — the KOS of a study's similar cases (highdicom, and pydicom for the
  multi-study evidence highdicom refuses; the module says why);
- :mod:`.write` — compute the similar cases, build, store through ingest, send;
- :mod:`.send` — C-STORE to a configured destination;
- :mod:`.auto` — the automatic mode: a KOS for each study that becomes stable (a
  ``kos`` duty, once across the cluster).
"""

from node.key_objects.auto import AutoKos, install_auto_kos, kos_uids
from node.key_objects.document import (
    KOS_DESCRIPTION,
    KOS_SOURCE,
    KOS_TITLE,
    build_similar_cases_kos,
    kos_bytes,
)
from node.key_objects.write import KosResult, write_similar_cases_kos

__all__ = [
    "KOS_DESCRIPTION",
    "KOS_SOURCE",
    "KOS_TITLE",
    "AutoKos",
    "KosResult",
    "build_similar_cases_kos",
    "install_auto_kos",
    "kos_bytes",
    "kos_uids",
    "write_similar_cases_kos",
]
