"""UrbanSound8K: 8,732 urban sound excerpts in 10 classes (``metadata/UrbanSound8K.csv``, ``audio/``)."""

from __future__ import annotations

import re

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder, Entry


@register("urbansound8k")
class UrbanSound8K(ClassificationBuilder):
    """UrbanSound8K as its folder holds it: ``metadata/UrbanSound8K.csv`` and the clips in ``audio/fold<N>/``;
    or the FusionAudio eval JSON with ``vocabulary/UrbanSound8K.csv``. Keeps the 10 folds (``fold``)."""

    METADATA = {"test": "metadata/UrbanSound8K.csv"}
    COLUMNS = ("slice_file_name", "fold", "classID", "class")
    VOCABULARY_KEY = "urbansound8k"
    FOLD = re.compile(r"(?:^|/)fold(\d+)/")

    def entry(self, split: str, row: dict[str, str]) -> Entry:
        fold = int(row["fold"])
        return Entry(f"audio/fold{fold}/{row['slice_file_name']}", [row["class"]], fold, int(row["classID"]))
