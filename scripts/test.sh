#!/usr/bin/env bash
# Install everything the tests use (Debian peers, the Python package with its dev extra
# in .venv) and run the whole suite. Idempotent; the README's second command.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -q
# dcmtk and Orthanc (+DICOMweb) are the real peers; PostgreSQL is the second catalog
# dialect; xvfb and the X/GL libraries run Qt.
$SUDO apt-get install -y -q --no-install-recommends \
  dcmtk orthanc orthanc-dicomweb postgresql xvfb xauth \
  libegl1 libgl1 libopengl0 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 \
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 \
  libxcb-randr0 libxcb-render-util0 libxcb-image0 fonts-dejavu-core >/dev/null
# Neither Debian service is used: the tests start their own Orthanc and their own
# PostgreSQL cluster (initdb into a temporary folder) on free ports.
$SUDO systemctl disable --now orthanc >/dev/null 2>&1 || true
$SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
export QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1
# Static checks first: import contracts, lint (pinned ruff, rules in pyproject.toml), types.
.venv/bin/lint-imports
.venv/bin/ruff check database node indexer viewer_plugin tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
