"""FSD50K: multi-label Freesound clips in 200 AudioSet classes (the eval set is the benchmark)."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder, Entry

_AUDIO = {"test": "FSD50K.eval_audio", "dev": "FSD50K.dev_audio"}


@register("fsd50k")
class FSD50K(ClassificationBuilder):
    """FSD50K as it is downloaded: ``FSD50K.ground_truth/eval.csv`` and ``dev.csv`` (``labels`` a quoted,
    comma-joined list; ``vocabulary.csv`` beside them checks it), the clips in ``FSD50K.eval_audio/`` and
    ``FSD50K.dev_audio/``; or the FusionAudio eval JSON (``Labels: a; b``)."""

    METADATA = {"test": "FSD50K.ground_truth/eval.csv", "dev": "FSD50K.ground_truth/dev.csv"}
    COLUMNS = ("fname", "labels")
    NATIVE_VOCABULARY = "FSD50K.ground_truth/vocabulary.csv"
    VOCABULARY_KEY = "fsd50k"

    def entry(self, split: str, row: dict[str, str]) -> Entry:
        labels = [label.strip() for label in row["labels"].split(",") if label.strip()]
        return Entry(f"{_AUDIO.get(split, _AUDIO['test'])}/{row['fname']}.wav", labels)
