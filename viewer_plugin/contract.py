"""The plugin contract between a host viewer and Precedent's panels.

A host viewer implements :class:`ViewerHost` (two methods, one optional), finds
panels through the entry-point group ``precedent.viewer_panels`` and embeds the
one it wants::

    from viewer_plugin.contract import load_panel

    panel_class = load_panel("find_similar")      # viewer_plugin.panel:FindSimilarPanel
    panel = panel_class(host=my_viewer)           # a QWidget: put it in a dock
    dock.setWidget(panel)

A panel class takes ``host`` (keyword) and optional ``settings`` (a ``QSettings``)
and ``parent``. See ``docs/viewer.md``. No Qt is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

from pydicom import Dataset

__all__ = [
    "ENTRY_POINT_GROUP",
    "ViewerHost",
    "discover_panels",
    "load_panel",
]

ENTRY_POINT_GROUP = "precedent.viewer_panels"


@runtime_checkable
class ViewerHost(Protocol):
    """What a panel needs from the viewer it lives in.

    ``current_study()``
        The study the radiologist is reading: its Study Instance UID when the
        node has it, or its pydicom data sets when it is only local (the panel
        then uploads one representative image as the query); ``None`` when no
        study is open.
    ``open_study(study_uid)``
        Show a study the node has (the panel calls it when a result is opened);
        the host fetches it over DICOMweb from the node (or from its own PACS).

    Optionally, a host may also offer ``current_image() -> tuple[str, str] | None``
    (the series and SOP Instance UIDs on screen); the panel uses it for series-
    and image-level queries instead of picking a representative image itself.
    """

    def current_study(self) -> str | Sequence[Dataset] | None: ...

    def open_study(self, study_uid: str) -> None: ...


def discover_panels() -> dict[str, EntryPoint]:
    """The panels installed, by name (entry-point group ``precedent.viewer_panels``)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_panel(name: str = "find_similar") -> Any:
    """The panel class registered under ``name``."""
    panels = discover_panels()
    if name not in panels:
        known = ", ".join(sorted(panels)) or "none"
        raise LookupError(f"name: no viewer panel {name!r} is installed (installed: {known})")
    return panels[name].load()
