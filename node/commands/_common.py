"""What every command group shares.

- :func:`settings_from`: the ``--config``/``--data-dir`` flags, the settings file and
  data folder found in the documented order (:mod:`node.locations`), and the one line on
  stderr saying which folder and file a command uses.
- :func:`require_catalog`: reads never create a catalog; a folder without one says so.
- :func:`data_folder_writer`: an administrative command acts through the running node
  (an :class:`~node.admin_client.AdminClient`), or holds the folder's lock itself while
  the node is down, or refuses naming the process that holds it.
- :func:`running_node`: for what only the running node does (a backfill): through it,
  or a one-line refusal saying to start it.
- :func:`progress`: a progress bar on stderr; log records and whatever else is written
  to stderr meanwhile (decoding processes included) is printed above the bar, whole.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import database
from node.errors import DataFolderBusy, NodeAdminError, NotFound
from node.locations import find_config_file
from node.settings import Settings, load_settings, location_notes

if TYPE_CHECKING:
    from node.admin_client import AdminClient

if TYPE_CHECKING:  # argparse names the type privately, and generic only in its stubs
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subcommands = argparse._SubParsersAction

__all__ = ["Subcommands", "add_location_flags", "console", "data_folder_writer", "note",
           "print_data", "progress", "require_catalog", "running_node", "settings_from",
           "use_cli_logging"]

#: progress bars and notes go to stderr; results to stdout
console = Console(stderr=True)
#: the command's log handler: prints through the console the progress bar uses
_handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)


def note(text: str) -> None:
    """One line on stderr, as it is (no markup, no wrapping)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def use_cli_logging() -> None:
    """Warnings and errors (of this process and its libraries) through rich, on the
    console progress bars use."""
    logging.basicConfig(level=logging.WARNING, handlers=[_handler], format="%(message)s",
                        force=True)
    logging.captureWarnings(True)


def add_location_flags(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--data-dir``: where the settings and the data folder are."""
    parser.add_argument("--config", type=Path, help="TOML settings file (default: "
                        "PRECEDENT_CONFIG, ./precedent.toml or /etc/precedent/node.toml)")
    parser.add_argument("--data-dir", type=Path, help="where files and the catalog live "
                        "(default: PRECEDENT_NODE__DATA_DIR, the settings file's, or "
                        "~/.local/share/precedent)")


def _node_config(catalog: database.Target) -> dict[str, str]:
    """The catalog's ``node_config`` (the AE title and port set over REST); nothing
    when there is no catalog yet (and none is made)."""
    if database.dialect_for(catalog) is database.DialectValues.SQLITE and not Path(
            catalog).exists():
        return {}
    from node.storage import aes, connect

    conn = connect(catalog)
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


def settings_from(args: argparse.Namespace, *, announce: bool = True) -> Settings:
    """Defaults < settings file < catalog (``PUT /config/ae``) < environment < flags;
    with ``announce``, the data folder and settings file in one line on stderr."""
    overrides: dict[str, dict[str, Any]] = {"node": {}, "http": {}, "model": {}}
    if getattr(args, "data_dir", None) is not None:
        overrides["node"]["data_dir"] = args.data_dir
    for flag, section, key in _FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            overrides[section][key] = value
    config = find_config_file(getattr(args, "config", None))
    settings = load_settings(config.path, {k: v for k, v in overrides.items() if v},
                             catalog=_node_config, config_source=config.source)
    if announce:
        note(f"precedent: {location_notes(settings)}")
    return settings


def require_catalog(settings: Settings) -> database.Target:
    """The catalog's target (its file or URL), or :class:`NotFound` saying the folder
    holds none (a read never makes one)."""
    if not settings.catalog_exists:
        raise NotFound(f"no catalog in {settings.node.data_dir}: nothing has been stored in "
                       "this data folder. Is it the node's? Commands use the folder the "
                       "node's settings name: give the same --config or --data-dir")
    return settings.catalog_target


@contextlib.contextmanager
def data_folder_writer(settings: Settings, command: str) -> Iterator[AdminClient | None]:
    """Through the running node (an :class:`AdminClient`), or ``None`` with the data
    folder's lock held here for as long as the block runs."""
    from node.admin_client import AdminClient
    from node.data_folder import DataFolderLock, Owner, OwnerRoleValues, current_owner, prepare

    data_dir = settings.node.data_dir
    owner = current_owner(data_dir)
    if owner is not None and owner.role is OwnerRoleValues.NODE:
        note(f"precedent: through {owner.describe()}")
        with AdminClient.for_owner(owner, settings) as client:
            yield client
        return
    if owner is not None:
        raise DataFolderBusy(f"the data folder {data_dir} is in use by {owner.describe()}; "
                             "wait for it to finish", owner=owner)
    prepare(data_dir)
    me = Owner(pid=os.getpid(), role=OwnerRoleValues.COMMAND, command=f"precedent {command}")
    with DataFolderLock.acquire(data_dir, me):
        yield None


@contextlib.contextmanager
def running_node(settings: Settings, what: str) -> Iterator[AdminClient]:
    """Through the running node (an :class:`AdminClient`) for ``what`` only it does;
    :class:`NodeAdminError` when no node owns the data folder, :class:`DataFolderBusy`
    when a command does."""
    from node.admin_client import AdminClient
    from node.data_folder import OwnerRoleValues, current_owner

    data_dir = settings.node.data_dir
    owner = current_owner(data_dir)
    if owner is None:
        raise NodeAdminError(f"the node is not running (nothing owns the data folder "
                             f"{data_dir}); {what} runs inside the node: start it with "
                             "`precedent serve`, or give the node's --config or --data-dir")
    if owner.role is not OwnerRoleValues.NODE:
        raise DataFolderBusy(f"the data folder {data_dir} is in use by {owner.describe()}, "
                             f"not by the node; {what} runs inside the node: wait for that "
                             "command to finish and start it with `precedent serve`",
                             owner=owner)
    note(f"precedent: through {owner.describe()}")
    with AdminClient.for_owner(owner, settings) as client:
        yield client


def print_data(data: Any, as_json: bool, table: str) -> None:
    """``data`` as JSON with ``--json``, else the human ``table``."""
    print(json.dumps(data, indent=2, default=str) if as_json else table)


def _pump(read_fd: int, target: Console) -> None:
    with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            target.print(line.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress() -> Iterator[Progress]:
    """A progress bar on stderr. While it is live, file descriptor 2 is a pipe whose
    lines are printed above the bar, so nothing (a decoding process's warning, a
    library's print) lands in the middle of it; log records go through the same
    console."""
    saved = os.dup(2)
    real = os.fdopen(saved, "w", encoding="utf-8", errors="replace", buffering=1)
    bar_console = Console(file=real)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd, bar_console), daemon=True)
    pump.start()
    previous, _handler.console = _handler.console, bar_console
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=bar_console, transient=False,
                   redirect_stderr=False)
    try:
        with bar:
            yield bar
    finally:
        sys.stderr.flush()
        os.dup2(real.fileno(), 2)  # the pipe's last writer here is gone; the pump ends
        pump.join(timeout=2.0)
        _handler.console = previous
        if not pump.is_alive():  # else a child still holds the pipe: leave the pump be
            real.close()
