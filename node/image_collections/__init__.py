"""Labelled image collections (research and teaching sets of PNG/JPEG pictures) into the
node, as DICOM Secondary Captures with reports.

- :mod:`.folder` — the folder, its labels (sub-folders or a CSV) and captions (JSONL);
- :mod:`.secondary_capture` — one picture as a Secondary Capture (highdicom), with
  deterministic UIDs;
- :mod:`.importer` — the import: ingest, reports, the evaluation labels file, a summary.

``precedent import collection`` (:mod:`node.commands.imports`) asks the running node to
do it (an operation of :mod:`node.operations`), or does it with the data folder's lock
held while the node is down. The package's ``__init__`` stays light.
"""

__all__: list[str] = []
