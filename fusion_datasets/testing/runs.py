"""Run options and small runs for tests and benchmarks of the pipeline's plumbing."""

from __future__ import annotations

from pathlib import Path

# `--set` options that leave the tiny config its tagger only: every clip is still decoded, parts are still
# committed and rerun, and a run takes seconds
TAGGING_ONLY: tuple[str, ...] = tuple(
    item for stage in ("experts.separation", "experts.speech", "experts.sound", "experts.music", "experts.visual",
                       "fusion", "filter", "qa")
    for item in ("--set", f"{stage}.enabled=false"))


def write_segmented_run(clips: Path, output: Path) -> Path:
    """``run tiny`` (tagger, fusion, QA) over a mono and a stereo clip and a 5 s file cut into two segments, in
    parts of two clips: 4 captions in 2 parts, the material of the export and shard tests. Returns ``output``."""
    from fusion_datasets.cli import main
    from fusion_datasets.testing import media

    media.write_audio(clips / "speech.wav", media.speech(1.5, 16000), 16000)
    media.write_audio(clips / "music.wav", media.music(1.5, 22050, channels=2), 22050)
    media.write_audio(clips / "long.flac", media.noise(5.0, 16000), 16000)
    argv = ["run", "tiny", "--input", str(clips), "--output", str(output), "--set", "output.shard_size=2",
            "--set", "input.segment_seconds=2.5", "--set", "filter.enabled=false"]
    for stage in ("separation", "speech", "sound", "music", "visual"):
        argv += ["--set", f"experts.{stage}.enabled=false"]
    if main(argv) != 0:
        raise RuntimeError(f"the tiny run into {output} failed")
    return output
