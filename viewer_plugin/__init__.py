"""Precedent's viewer plugin: the "Find similar" panel, its Qt-free client and model,
the plugin contract, and a small host viewer.

It talks to the node only over HTTP (DICOMweb and the similar-case extension).
The Qt-free names are importable without PySide6; the panel, the study browser and
the host viewer are in :mod:`viewer_plugin.panel`, :mod:`viewer_plugin.study_browser`
and :mod:`viewer_plugin.host`.
"""

from viewer_plugin.cases import Consensus, KosResult, Report, SimilarCase, SimilarResult
from viewer_plugin.client import PrecedentClient
from viewer_plugin.connection import DEFAULT_URL, NodeSettings
from viewer_plugin.contract import ENTRY_POINT_GROUP, ViewerHost, discover_panels, load_panel
from viewer_plugin.errors import (
    BadQuery,
    ModelNotLoaded,
    NodeFailed,
    NodeRefused,
    NodeTimeout,
    NodeUnreachable,
    NotFound,
    PrecedentError,
    QueryCancelled,
    TokenRefused,
)
from viewer_plugin.model import PanelModel, QueryState
from viewer_plugin.query import LevelValues, SimilarQuery
from viewer_plugin.study_search import StudyPage, StudyRow, StudySearch

__all__ = [
    "DEFAULT_URL",
    "ENTRY_POINT_GROUP",
    "BadQuery",
    "Consensus",
    "KosResult",
    "LevelValues",
    "ModelNotLoaded",
    "NodeFailed",
    "NodeRefused",
    "NodeSettings",
    "NodeTimeout",
    "NodeUnreachable",
    "NotFound",
    "PanelModel",
    "PrecedentClient",
    "PrecedentError",
    "QueryCancelled",
    "QueryState",
    "Report",
    "SimilarCase",
    "SimilarQuery",
    "SimilarResult",
    "StudyPage",
    "StudyRow",
    "StudySearch",
    "TokenRefused",
    "ViewerHost",
    "discover_panels",
    "load_panel",
]
