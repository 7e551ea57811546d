"""UrbanSound8K: 8,732 urban sound excerpts in 10 classes (``metadata/UrbanSound8K.csv``, ``audio/``)."""

from __future__ import annotations

import re

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder, Entry


@register("urbansound8k")
class UrbanSound8K(ClassificationBuilder):
    """UrbanSound8K (``metadata/UrbanSound8K.csv``: slice_file_name, fsID, start, end, salience, fold,
    classID, class; audio in ``audio/fold<N>/``) or the FusionAudio eval JSON with
    ``vocabulary/UrbanSound8K.csv``; 10 folds."""

    METADATA = {"test": "metadata/UrbanSound8K.csv"}
    VOCABULARY_KEY = "urbansound8k"
    FOLD = re.compile(r"(?:^|/)fold(\d+)/")

    def entry(self, split: str, row: dict[str, str]) -> Entry:
        fold = int(row["fold"])
        return Entry(f"audio/fold{fold}/{row['slice_file_name']}", [row["class"]], fold, int(row["classID"]))
