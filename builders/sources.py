"""What the source builders (clips for the pipeline) share: the input columns and the leakage guard."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets

from fusion_datasets.builders.base import BuildConfig, FusionBuilder, option
from fusion_datasets.builders.leakage import benchmark_clip_ids, recorded_benchmarks
from fusion_datasets.builders.names import source_key

logger = logging.getLogger(__name__)

SOURCE_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "audio": datasets.Audio(),
    "video": datasets.Value("string"),
    "start": datasets.Value("float64"),  # set where a file is longer than its clip (the pipeline cuts it)
    "end": datasets.Value("float64"),
    "source": datasets.Value("string"),
    "license": datasets.Value("string"),
    "audio_tags": datasets.List({"label": datasets.Value("string"), "score": datasets.Value("float32")}),
    "source_caption": datasets.Value("string"),
})


@dataclass
class SourceConfig(BuildConfig):
    exclude: tuple[str, ...] = option("a built benchmark whose clips are left out (repeat for several)", default=(),
                                      metavar="BENCHMARK_DIR")
    leakage_guard: bool = option("the clips of every retrieval/QA test set built on this machine are left out",
                                 default=True, off="they are kept")


class SourceBuilder(FusionBuilder):
    """Clips for ``fusion-datasets run`` (a ``train`` split), benchmark clips left out (the leakage guard).

    Left out: the clips of each ``--exclude`` benchmark and, unless ``--no-leakage-guard``, those of every
    retrieval and QA test set built on this machine (``fusion-datasets build`` records them), matched by
    YouTube id and start time (a clip or benchmark entry without a start matches every start), else by stem.
    """

    BUILDER_CONFIG_CLASS = SourceConfig
    FEATURES = SOURCE_FEATURES

    def splits(self) -> tuple[str, ...]:
        return (self.config.split or "train",)

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        benchmarks = [*self.config.exclude, *(recorded_benchmarks() if self.config.leakage_guard else [])]
        if not benchmarks:
            logger.warning("%s: no benchmark built or given to exclude: no clip is kept out", self.NAME)
        logger.info("%s: clips of %d benchmarks are kept out: %s", self.NAME, len(benchmarks),
                    ", ".join(map(str, benchmarks)))
        excluded = benchmark_clip_ids(*dict.fromkeys(map(str, benchmarks)))
        for row in self.clips():
            if source_key(row["id"]) in excluded:
                self.report.excluded += 1
            else:
                yield {**dict.fromkeys(SOURCE_FEATURES), "audio_tags": [], **row}

    def clips(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError
