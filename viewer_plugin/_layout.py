"""Rows and columns of widgets, each on a container widget of its own.

The viewer never nests layouts (no ``addLayout``, no ``addRow(layout)``): destroying a
layout that holds another layout with widgets in it makes shiboken release the GIL
half-way through, and a garbage collection that another thread of the host runs at
that moment crashes the process (PySide6 6.12; reproduced with plain widgets and a
thread calling ``gc.collect()``). A container widget per row or column costs nothing
and has no such window. ``tests/viewer_plugin/test_guest.py`` holds the rule.
"""

from __future__ import annotations

from PySide6.QtWidgets import QBoxLayout, QHBoxLayout, QVBoxLayout, QWidget

__all__ = ["STRETCH", "Item", "column", "row"]

#: an item that takes the free space
STRETCH = "stretch"

Item = QWidget | tuple[QWidget, int] | str


def _fill(layout: QBoxLayout, items: tuple[Item, ...]) -> None:
    for item in items:
        if isinstance(item, str):
            layout.addStretch(1)
        elif isinstance(item, tuple):
            layout.addWidget(item[0], item[1])
        else:
            layout.addWidget(item)


def row(*items: Item, margin: int = 0, spacing: int = -1) -> QWidget:
    """A widget holding ``items`` side by side (``(widget, stretch)`` or :data:`STRETCH`)."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(margin, margin, margin, margin)
    if spacing >= 0:
        layout.setSpacing(spacing)
    _fill(layout, items)
    return box


def column(*items: Item, margin: int = 0, spacing: int = -1) -> QWidget:
    """A widget holding ``items`` one above the other."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(margin, margin, margin, margin)
    if spacing >= 0:
        layout.setSpacing(spacing)
    _fill(layout, items)
    return box
