"""UrbanSound8K: 8,732 urban sound excerpts in 10 classes (``metadata/UrbanSound8K.csv``, ``audio/``)."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder


@register("urbansound8k")
class UrbanSound8K(ClassificationBuilder):
    """UrbanSound8K (``metadata/UrbanSound8K.csv``: slice_file_name, fsID, start, end, salience, fold,
    classID, class; audio in ``audio/fold<N>/``) or the FusionAudio eval JSON with
    ``vocabulary/UrbanSound8K.csv``."""

    METADATA = {"test": "metadata/UrbanSound8K.csv"}
    VOCABULARY_KEY = "urbansound8k"

    def entry(self, split: str, row: dict[str, str]) -> tuple[str, list[str]]:
        return f"audio/fold{row['fold']}/{row['slice_file_name']}", [row["class"]]
