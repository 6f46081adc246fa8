"""What every command group shares: the ``--config``/``--data-dir`` flags and the one
way settings are read, the console for progress bars, and JSON-or-table printing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from node.settings import Settings, load_settings

__all__ = ["Subcommands", "add_location_flags", "console", "print_data", "progress",
           "settings_from"]

#: what ``register(commands)`` receives: the parser's sub-command collection
if TYPE_CHECKING:  # argparse names the type privately, and generic only in its stubs
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subcommands = argparse._SubParsersAction

#: progress bars and notes go to stderr; results to stdout
console = Console(stderr=True)


def add_location_flags(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--data-dir``: where the settings and the data folder are."""
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("--data-dir", type=Path, help="where files and the catalog live")


def _node_config(db_path: Path) -> dict[str, str]:
    """The catalog's ``node_config`` (the AE title and port set over REST); nothing
    when there is no catalog yet."""
    if not db_path.exists():
        return {}
    from node.storage import aes, connect

    conn = connect(db_path)
    try:
        return aes.get_node_config(conn)
    finally:
        conn.close()


#: command-line flag → (settings section, key)
_FLAGS = [
    ("ae_title", "node", "ae_title"), ("dimse_port", "node", "dimse_port"),
    ("host", "node", "host"), ("http_port", "http", "port"), ("host", "http", "host"),
    ("model", "model", "name"), ("allow_any_source", "node", "allow_any_source"),
]


def settings_from(args: argparse.Namespace) -> Settings:
    """Defaults < ``--config`` < catalog (``PUT /config/ae``) < environment < flags."""
    overrides: dict[str, dict[str, Any]] = {"node": {}, "http": {}, "model": {}}
    if getattr(args, "data_dir", None) is not None:
        overrides["node"]["data_dir"] = args.data_dir
    for flag, section, key in _FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            overrides[section][key] = value
    return load_settings(getattr(args, "config", None),
                         {k: v for k, v in overrides.items() if v}, catalog=_node_config)


def print_data(data: Any, as_json: bool, table: str) -> None:
    """``data`` as JSON with ``--json``, else the human ``table``."""
    print(json.dumps(data, indent=2, default=str) if as_json else table)


def progress() -> Progress:
    """A progress bar on stderr."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=False)
