"""``python -m node`` is the ``precedent`` command."""

from node.cli import main

raise SystemExit(main())
