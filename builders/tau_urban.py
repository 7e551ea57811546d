"""TAU Urban Acoustic Scenes (DCASE, mobile development set): 10 scenes, tab-separated metadata."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder, Entry


@register("tau-urban")
class TAUUrban(ClassificationBuilder):
    """TAU Urban Acoustic Scenes (``meta.csv``, tab-separated: filename, scene_label, identifier,
    source_label; ``--data-file evaluation_setup/fold1_evaluate.csv`` for the evaluation fold) or the
    FusionAudio eval JSON with ``vocabulary/TAU_Urban.csv``."""

    METADATA = {"test": "meta.csv"}
    DELIMITER = "\t"
    VOCABULARY_KEY = "tauurban"

    def entry(self, split: str, row: dict[str, str]) -> Entry:
        return Entry(row["filename"], [row["scene_label"]])
