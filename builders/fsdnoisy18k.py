"""FSDnoisy18K: Freesound clips in 20 classes, noisy train labels (the clean test set is the benchmark)."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder, Entry

_AUDIO = {"test": "FSDnoisy18k.audio_test", "train": "FSDnoisy18k.audio_train"}


@register("fsdnoisy18k")
class FSDnoisy18K(ClassificationBuilder):
    """FSDnoisy18K as it is downloaded: ``FSDnoisy18k.meta/test.csv`` and ``train.csv``, the clips in
    ``FSDnoisy18k.audio_test/`` and ``FSDnoisy18k.audio_train/``; or the FusionAudio eval JSON with
    ``vocabulary/FSDnoisy18k.csv``."""

    METADATA = {"test": "FSDnoisy18k.meta/test.csv", "train": "FSDnoisy18k.meta/train.csv"}
    COLUMNS = ("fname", "label")
    VOCABULARY_KEY = "fsdnoisy18k"

    def entry(self, split: str, row: dict[str, str]) -> Entry:
        return Entry(f"{_AUDIO.get(split, _AUDIO['test'])}/{row['fname']}", [row["label"]])
