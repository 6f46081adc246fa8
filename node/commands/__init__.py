"""The ``precedent`` command's groups, one module each, registered by :mod:`node.cli`.

Each module has ``register(commands)``, which adds its sub-command (with its own
sub-commands, flags and help) to the parser and sets ``run`` to the function that
carries it out (``run(args) -> exit status``). Adding a group is a new module here and
one line in :data:`node.cli.GROUPS`. What every group shares (where the settings and
the data folder come from, the progress bar) is in :mod:`node.commands._common`.
"""

__all__: list[str] = []
