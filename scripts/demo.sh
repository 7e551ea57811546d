#!/usr/bin/env bash
# Quick start 1: set up, then run the whole pipeline on the bundled sample clips (CPU, offline tiny models).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/fusion-datasets demo --tiny-models --output demo_output "$@"
