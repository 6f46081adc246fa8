"""Labelled image collections (research and teaching sets of PNG/JPEG pictures) into the
node, as DICOM Secondary Captures with reports.

- :mod:`.folder` — the folder, its labels (sub-folders or a CSV) and captions (JSONL);
- :mod:`.secondary_capture` — one picture as a Secondary Capture (highdicom), with
  deterministic UIDs;
- :mod:`.importer` — the import: ingest, reports, the evaluation labels file, a summary;
- :mod:`.cli` — ``precedent import collection``, through the running node when it is up.

The package's ``__init__`` stays light (the ``precedent`` command imports :mod:`.cli`).
"""

__all__: list[str] = []
