"""Where the node's settings file and data folder are, found the same way by every
``precedent`` command (``serve`` included), in this documented order.

The settings file, the first of:

1. ``--config FILE``;
2. the ``PRECEDENT_CONFIG`` environment variable;
3. ``./precedent.toml`` (in the folder the command runs from), when it exists;
4. ``/etc/precedent/node.toml``, when it exists;
5. none: the built-in defaults.

The data folder, the first of: ``--data-dir``; ``PRECEDENT_NODE__DATA_DIR``; the
settings file's ``[node] data_dir`` (a relative path counts from the file's folder);
the default, ``$XDG_DATA_HOME/precedent`` (``~/.local/share/precedent``) — per user,
never relative to the folder a command happens to run from.

:func:`node.settings.location_notes` is the one line each command prints (stderr) and
``serve`` logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CONFIG_ENV",
    "CONFIG_LOCATIONS",
    "DATA_DIR_ENV",
    "ConfigFile",
    "default_data_dir",
    "find_config_file",
]

#: the environment variable naming the settings file
CONFIG_ENV = "PRECEDENT_CONFIG"
#: the environment variable naming the data folder (the ``[node] data_dir`` setting)
DATA_DIR_ENV = "PRECEDENT_NODE__DATA_DIR"
#: where a settings file is looked for when neither ``--config`` nor
#: ``PRECEDENT_CONFIG`` names one (the first that exists)
CONFIG_LOCATIONS = (Path("precedent.toml"), Path("/etc/precedent/node.toml"))


@dataclass(frozen=True)
class ConfigFile:
    """The settings file a command uses (``path`` None: none) and why that one."""

    path: Path | None
    source: str


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/precedent``, else ``~/.local/share/precedent``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser().absolute() / "precedent"


def find_config_file(explicit: Path | None, *, environ: Mapping[str, str] | None = None,
                     locations: tuple[Path, ...] = CONFIG_LOCATIONS) -> ConfigFile:
    """The settings file in the documented order (``--config``, ``PRECEDENT_CONFIG``,
    then the first of ``locations`` that exists)."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return ConfigFile(Path(explicit).expanduser().absolute(), "--config")
    if env.get(CONFIG_ENV):
        return ConfigFile(Path(env[CONFIG_ENV]).expanduser().absolute(), CONFIG_ENV)
    for candidate in locations:
        if candidate.is_file():
            return ConfigFile(candidate.absolute(), "found at " + str(candidate))
    return ConfigFile(None, "none found at " + " or ".join(str(p) for p in locations))
