"""Clotho for retrieval: one row per clip with its 5 captions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fusion_datasets.builders.base import register
from fusion_datasets.builders.names import media_stem, source_key
from fusion_datasets.builders.retrieval import RetrievalBuilder

_AUDIO = {"train": "development", "validation": "validation", "test": "evaluation"}


@register("clotho")
class Clotho(RetrievalBuilder):
    """Clotho as it is downloaded: ``clotho_captions_evaluation.csv`` (``file_name``, ``caption_1`` ..
    ``caption_5``) and the clips in ``evaluation/`` under the audio root; ``_validation`` and ``_development``
    likewise, with ``validation/`` and ``development/`` (file names hold spaces and commas: the CSV quotes them)."""

    METADATA = {split: f"clotho_captions_{folder}.csv" for split, folder in _AUDIO.items()}
    COLUMNS = ("file_name",)

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        path = self.metadata_file(split)
        for line, row in self.read_csv(path, columns=self.COLUMNS):
            where, stem, key = f"{path}:{line}", media_stem(row["file_name"]), source_key(row["file_name"])
            if not self.benchmark_clip(key):
                continue
            captions = [row[column] for column in sorted(row) if column.startswith("caption") and row[column]]
            if not captions:
                self.report.skip("empty_field", where, "no caption")
                continue
            audio = self.find_audio(f"{_AUDIO.get(split, 'evaluation')}/{row['file_name']}", where, stem)
            if audio:
                yield {"id": stem, "clip_id": key[0], "audio": audio, "captions": captions}
