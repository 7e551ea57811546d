"""AudioCaps for retrieval: one row per clip with its captions (5 per clip in the test set)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fusion_datasets.builders.base import ClipIndex, register
from fusion_datasets.builders.retrieval import RetrievalBuilder
from fusion_datasets.fetch.manifest import Availability


@register("audiocaps")
class AudioCaps(RetrievalBuilder):
    """AudioCaps' ``test.csv`` (``val.csv``, ``train.csv``) joined with the downloaded clips under the audio
    root, named like AudioSet clips (``Y<ytid>``, ``<ytid>``, ``<ytid>_<start>...``: a name with a start time
    must carry the row's); a clip's caption lines make one row with its captions. Where ``fusion-datasets fetch``
    wrote the audio root, its manifest says which clips YouTube no longer has (skipped as ``unavailable``)."""

    METADATA = {"test": "test.csv", "validation": "val.csv", "train": "train.csv"}
    COLUMNS = ("youtube_id", "start_time", "caption")

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        path = self.metadata_file(split)
        index, availability = ClipIndex(self.audio_root), Availability(self.audio_root)
        clips: dict[str, dict[str, Any] | None] = {}
        gone: set[str] = set()  # clips the fetch's manifest says YouTube does not have
        starts: dict[str, float] = {}  # a clip's start, from its first row (a later caption row needs none)
        for line, row in self.read_csv(path, columns=self.COLUMNS):
            where, ytid = f"{path}:{line}", row["youtube_id"]
            try:
                start = starts.setdefault(ytid, float(row["start_time"]))
            except ValueError:
                start = starts.get(ytid)
            if ytid and not self.benchmark_clip((ytid, start)):
                continue  # not on the clip list
            if not ytid or not row["caption"]:
                self.report.skip("empty_field", where, "no youtube_id or caption")
                continue
            if start is None:
                self.report.skip("bad_csv_line", where, f"start_time {row['start_time']!r} is no number")
                continue
            if ytid in gone:
                continue
            if ytid not in clips:
                found = index.find(ytid, start)
                status = availability.status(ytid, start) if availability else None
                if not found and status not in (None, "ok"):
                    self.report.skip("unavailable", where, f"{ytid}_{start:g}: {status}")
                    gone.add(ytid)
                    continue
                clips[ytid] = found and {"id": ytid, "clip_id": ytid, "audio": str(found[0]), "captions": []}
            if clips[ytid] is None:
                self.report.missing_clip(ytid, where, f"{ytid}_{start:g}")
            else:
                clips[ytid]["captions"].append(row["caption"])
        if availability:
            self.report.notes["availability"] = availability.note()
        yield from (clip for clip in clips.values() if clip)
