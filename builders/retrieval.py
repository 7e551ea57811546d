"""What the retrieval benchmarks (AudioCaps, Clotho) share: one row per clip with its captions, and a clip list.

The AudioCaps test set of the literature is often the clips still downloadable (957 in WavCaps and FusionAudio)
rather than the CSV's 975: ``--clip-list FILE`` (one id per line) pins the clips, and ``stats.json`` says how
many of the list were found. The leakage guard still records every clip of the metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets

from fusion_datasets.builders.base import BuildConfig, FusionBuilder, option
from fusion_datasets.builders.leakage import BenchmarkClips, Key, read_clip_list

RETRIEVAL_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "clip_id": datasets.Value("string"),
    "audio": datasets.Audio(),
    "captions": datasets.List(datasets.Value("string")),
})


@dataclass
class RetrievalConfig(BuildConfig):
    clip_list: str | None = option("build only the clips listed in FILE, one YouTube id, AudioSet name or file "
                                   "name per line", metavar="FILE")


class RetrievalBuilder(FusionBuilder):
    """A retrieval benchmark: one row per clip with its captions (a test set: sources built later leave
    its clips out)."""

    BUILDER_CONFIG_CLASS = RetrievalConfig
    FEATURES = RETRIEVAL_FEATURES
    TEST_SET = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned = read_clip_list(self.config.clip_list) if self.config.clip_list else None
        self.listed_in_metadata = BenchmarkClips()

    def benchmark_clip(self, key: Key) -> bool:
        """Record a clip of the metadata (the leakage guard); whether to build it (it is on the clip list).

        A subclass calls it for every clip its metadata names, found on disk or not.
        """
        self.benchmark_clips.add(key)
        match = self.pinned.match(key) if self.pinned is not None else key
        if match and self.pinned is not None:
            self.listed_in_metadata.add(match)
        return match is not None

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from super()._generate_examples(split)
        if self.pinned is not None:
            found = len(self.listed_in_metadata)
            self.report.notes["clip_list"] = {
                "file": self.config.clip_list, "listed": len(self.pinned), "found": self.report.written[self.row_unit],
                "not_in_metadata": len(self.pinned) - found,
                "left_out": len(self.benchmark_clips) - found,  # metadata clips not on the list
            }
