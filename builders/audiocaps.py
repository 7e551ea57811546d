"""AudioCaps test for retrieval: one row per clip with its captions (5 per clip in the test set)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fusion_datasets.builders.base import RETRIEVAL_FEATURES, ClipIndex, FusionBuilder, read_csv, register


@register("audiocaps")
class AudioCaps(FusionBuilder):
    """AudioCaps ``test.csv`` (audiocap_id, youtube_id, start_time, caption) joined with the downloaded clips,
    named like AudioSet clips (``Y<ytid>``, ``<ytid>``, ``<ytid>_<start>...``), under the audio root."""

    TEST_SET = True
    FEATURES = RETRIEVAL_FEATURES

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        path = self.data_file("test.csv")
        index = ClipIndex(self.audio_root)
        clips: dict[str, dict[str, Any] | None] = {}
        for line, row in read_csv(path, self.report, columns=("youtube_id", "start_time", "caption")):
            where, ytid = f"{path}:{line}", row["youtube_id"]
            if not ytid or not row["caption"]:
                self.report.skip("empty_field", where, "no youtube_id or caption")
                continue
            if ytid not in clips:
                try:
                    found = index.find(ytid, float(row["start_time"]))
                except ValueError:
                    self.report.skip("bad_csv_line", where, f"start_time {row['start_time']!r} is no number")
                    continue
                clips[ytid] = found and {"id": ytid, "clip_id": ytid, "audio": str(found[0]), "captions": []}
            if clips[ytid] is None:
                self.report.missing_clip(ytid, where, ytid)
            else:
                clips[ytid]["captions"].append(row["caption"])
        yield from (clip for clip in clips.values() if clip)
