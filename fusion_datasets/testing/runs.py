"""Run options for tests and benchmarks of the pipeline's plumbing."""

from __future__ import annotations

# `--set` options that leave the tiny config its tagger only: every clip is still decoded, parts are still
# committed and rerun, and a run takes seconds
TAGGING_ONLY: tuple[str, ...] = tuple(
    item for stage in ("experts.separation", "experts.speech", "experts.sound", "experts.music", "experts.visual",
                       "fusion", "filter", "qa")
    for item in ("--set", f"{stage}.enabled=false"))
