#!/usr/bin/env bash
# Idempotent set-up of a development environment: system packages, then .venv with the project.
# Sourced or run from the repository root; a second run that finds everything in place does nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
missing=()
for binary in ffmpeg espeak-ng sox; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg espeak-ng sox >/dev/null
fi
# eval captions runs pycocoevalcap's jars (PTB tokenizer, METEOR, SPICE): Debian 12's Java 17 runs them
if ! command -v java >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
fi
# the review page's browser test (tests/review) drives Debian's Chromium; Playwright downloads no browser
if ! command -v chromium >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.fusion-datasets-setup
wanted=$(cat setup.cfg pyproject.toml scripts/setup.sh scripts/install_laion_clap.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[all]"
  bash scripts/install_laion_clap.sh .venv/bin/python
  echo "$wanted" > "$stamp"
fi
