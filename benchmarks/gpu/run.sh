#!/usr/bin/env bash
# The GPU benchmark kit in one command on a bare GPU machine without network: install the wheels that
# fetch_wheels.sh put in .gpu-carry/ (offline, into a folder of their own), then measure the paper pipeline's experts.
#
#     bash benchmarks/gpu/run.sh                                  # every stage, 540 s budget
#     bash benchmarks/gpu/run.sh --stages visual --merge gpu_throughput.json   # add to an earlier run's file
#
# Extra arguments go to benchmark.py (--stages, --budget-seconds, --batch-sizes, ...). The JSON goes to
# $OUT/gpu_throughput.json and the log to $OUT/gpu_benchmark.log where OUT is set (the device tool brings that
# folder back), else to the current folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARRY=${CARRY:-.gpu-carry}
SITE=${SITE:-/tmp/gpu-kit-site}
PYTHON=${PYTHON:-python3}

OUT=${OUT:-.}
exec > >(tee -a "$OUT/gpu_benchmark.log") 2>&1  # the whole log comes back with the JSON

"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
  "$CARRY"/wheels/*.whl
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export FUSION_DATASETS_TINY_ZOO=${FUSION_DATASETS_TINY_ZOO:-/tmp/gpu-kit-zoo}  # the processors, built offline
video=()
[ -f "$CARRY/clip.mp4" ] && video=(--video "$CARRY/clip.mp4")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec "$PYTHON" benchmarks/gpu/benchmark.py --budget-seconds "${BUDGET_SECONDS:-540}" \
  --output "$OUT/gpu_throughput.json" "${video[@]}" "$@"
