#!/usr/bin/env bash
# Install the node in .venv and start it with the embedded defaults (SQLite catalog and
# files in ~/.local/share/precedent, AE title PRECEDENT on port 11112, HTTP on
# 127.0.0.1:8080). Extra arguments go to `precedent serve`, e.g. --config
# conf/node.example.toml, or --model local-dir:DIR for a model folder
# (`precedent model tryout DIR` writes a try-out one).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q .
exec .venv/bin/precedent serve "$@"
