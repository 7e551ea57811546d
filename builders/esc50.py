"""ESC-50: 2,000 environmental clips in 50 classes (``meta/esc50.csv``, ``audio/``)."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder


@register("esc50")
class ESC50(ClassificationBuilder):
    """ESC-50 from ``ESC-50-master`` (``meta/esc50.csv``: filename, fold, target, category, ...) or the
    FusionAudio eval JSON with ``vocabulary/ESC50.csv``."""

    METADATA = {"test": "meta/esc50.csv"}
    VOCABULARY_KEY = "esc50"

    def entry(self, split: str, row: dict[str, str]) -> tuple[str, list[str]]:
        return f"audio/{row['filename']}", [row["category"]]
