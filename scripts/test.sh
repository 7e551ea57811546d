#!/usr/bin/env bash
# Quick start 2: set up, lint (ruff), then run the test suite (offline). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
