#!/usr/bin/env bash
# laion-clap 1.1.7 declares numpy<2 but works with numpy 2.4, which pyarrow 26 needs: install it
# without its declared dependencies. Its real dependencies are the `laion` extra of setup.cfg.
# Usage: scripts/install_laion_clap.sh [PYTHON]
set -euo pipefail
python=${1:-python}
"$python" -m pip install -q --no-deps laion-clap==1.1.7
