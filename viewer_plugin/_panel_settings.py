"""What the panel remembers between sessions, in ``QSettings``: the node (URL, token,
timeout), the last KOS destination, and the query defaults. Unreadable values fall
back to the defaults.

Keys: ``node/url``, ``node/token``, ``node/timeout``, ``kos/destination``,
``defaults/level``, ``defaults/limit``, ``defaults/exclude_patient``,
``defaults/hide_identity``, ``defaults/hybrid``, ``defaults/min_support`` (0 to 1).
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

from viewer_plugin.connection import DEFAULT_URL
from viewer_plugin.model import DEFAULT_MIN_SUPPORT, QueryState
from viewer_plugin.query import LevelValues

__all__ = ["load_node", "load_state", "save_defaults", "save_node"]


def _flag(s: QSettings, key: str, default: bool) -> bool:
    value = s.value(key, default)
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1")


def _number(s: QSettings, key: str, default: float, lo: float, hi: float) -> float:
    try:
        value = float(str(s.value(key, default)))
    except (TypeError, ValueError):
        return default
    return min(hi, max(lo, value))


def load_state(s: QSettings) -> QueryState:
    """The query defaults the user left."""
    try:
        level = LevelValues(str(s.value("defaults/level", LevelValues.STUDY.value)))
    except ValueError:
        level = LevelValues.STUDY
    return QueryState(
        level=level,
        limit=int(_number(s, "defaults/limit", 10, 1, 100)),
        exclude_patient=_flag(s, "defaults/exclude_patient", True),
        hide_identity=_flag(s, "defaults/hide_identity", True),
        hybrid=_flag(s, "defaults/hybrid", True),
        min_support=_number(s, "defaults/min_support", DEFAULT_MIN_SUPPORT, 0.0, 1.0),
    )


def save_defaults(s: QSettings, state: QueryState) -> None:
    s.setValue("defaults/level", state.level.value)
    s.setValue("defaults/limit", state.limit)
    s.setValue("defaults/exclude_patient", state.exclude_patient)
    s.setValue("defaults/hide_identity", state.hide_identity)
    s.setValue("defaults/hybrid", state.hybrid)
    s.setValue("defaults/min_support", state.min_support)


def load_node(s: QSettings) -> tuple[str, str, float, bool]:
    """(URL, token, timeout, whether a URL was ever saved)."""
    saved = bool(s.value("node/url"))
    url = str(s.value("node/url", DEFAULT_URL) or DEFAULT_URL)
    token = str(s.value("node/token", "") or "")
    return url, token, _number(s, "node/timeout", 20.0, 0.5, 300.0), saved


def save_node(s: QSettings, url: str, token: str, timeout: float) -> None:
    s.setValue("node/url", url.strip() or DEFAULT_URL)
    s.setValue("node/token", token)
    s.setValue("node/timeout", timeout)
    s.sync()
