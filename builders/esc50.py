"""ESC-50: 2,000 environmental clips in 50 classes (``meta/esc50.csv``, ``audio/``)."""

from __future__ import annotations

import re

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder, Entry


@register("esc50")
class ESC50(ClassificationBuilder):
    """ESC-50 as its ``ESC-50-master`` folder holds it: ``meta/esc50.csv`` and the clips in ``audio/``; or the
    FusionAudio eval JSON with ``vocabulary/ESC50.csv``. Keeps the 5 cross-validation folds (``fold``)."""

    METADATA = {"test": "meta/esc50.csv"}
    COLUMNS = ("filename", "fold", "target", "category")
    VOCABULARY_KEY = "esc50"
    FOLD = re.compile(r"(?:^|/)(\d+)-\d+-[A-Z]-\d+\.\w+$")

    def entry(self, split: str, row: dict[str, str]) -> Entry:
        return Entry(f"audio/{row['filename']}", [row["category"]], int(row["fold"]), int(row["target"]))
