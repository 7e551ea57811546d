#!/usr/bin/env bash
# Download, here, every wheel the GPU benchmark kit needs there (requirements.txt), build this package's
# wheel and a 10 s 640x360 video for the visual stage (the GPU machine has no ffmpeg), into .gpu-carry/
# (ignored through .git/info/exclude). Carry that folder to the GPU machine and run benchmarks/gpu/run.sh.
#
#     bash benchmarks/gpu/fetch_wheels.sh          # then: carry .gpu-carry, run `bash benchmarks/gpu/run.sh`
set -euo pipefail
cd "$(dirname "$0")/../.."
CARRY=${CARRY:-.gpu-carry}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
LIMIT_MIB=64  # what travels to the GPU machine with the working tree, at most

rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
grep -qxF "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
platforms=()
for platform in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux2010 manylinux1; do
  platforms+=(--platform "${platform}_x86_64")
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$CARRY/wheels" -r benchmarks/gpu/requirements.txt
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$CARRY/wheels" . >"$CARRY/build.log" 2>&1 \
  || { cat "$CARRY/build.log"; exit 1; }
"$PYTHON" -c "import sys; from fusion_datasets.synthetic import write_video
write_video(sys.argv[1], 10.0, fps=25, size=(640, 360))" "$CARRY/clip.mp4"

ls -l "$CARRY/wheels" "$CARRY/clip.mp4"
carried=$(du -sm "$CARRY" | cut -f1)
tree=$(git ls-files -z | du -cm --files0-from=- | tail -1 | cut -f1)
echo "carry: ${carried} MiB (working tree ${tree} MiB; ${LIMIT_MIB} MiB travel in all)"
if (( carried + tree > LIMIT_MIB )); then
  echo "too large to carry" >&2
  exit 1
fi
