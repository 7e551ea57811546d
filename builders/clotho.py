"""Clotho evaluation for retrieval: one row per clip with its 5 captions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fusion_datasets.builders.base import (
    RETRIEVAL_FEATURES,
    FusionBuilder,
    clip_key,
    media_stem,
    read_csv,
    register,
)


@register("clotho")
class Clotho(FusionBuilder):
    """Clotho ``clotho_captions_evaluation.csv`` (file_name, caption_1 ... caption_5) with the audio files of
    ``evaluation/`` under the audio root (file names hold spaces and commas: the CSV quotes them)."""

    TEST_SET = True
    FEATURES = RETRIEVAL_FEATURES

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        path = self.data_file("clotho_captions_evaluation.csv")
        for line, row in read_csv(path, self.report, columns=("file_name",)):
            where, stem = f"{path}:{line}", media_stem(row["file_name"])
            captions = [row[column] for column in sorted(row) if column.startswith("caption") and row[column]]
            if not captions:
                self.report.skip("empty_field", where, "no caption")
                continue
            audio = self.find_audio(f"evaluation/{row['file_name']}", where, stem)
            if audio:
                yield {"id": stem, "clip_id": clip_key(stem), "audio": audio, "captions": captions}
