"""TAU Urban Acoustic Scenes (DCASE, mobile development set): 10 scenes, tab-separated metadata."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.classification import ClassificationBuilder, Entry


@register("tau-urban")
class TAUUrban(ClassificationBuilder):
    """TAU Urban Acoustic Scenes as its development set holds it: ``meta.csv`` (tab-separated; ``filename`` is
    the clip's path, ``audio/...``), or ``--data-file evaluation_setup/fold1_evaluate.csv`` for the evaluation
    fold; or the FusionAudio eval JSON with ``vocabulary/TAU_Urban.csv``."""

    METADATA = {"test": "meta.csv"}
    COLUMNS = ("filename", "scene_label")
    DELIMITER = "\t"
    VOCABULARY_KEY = "tauurban"

    def entry(self, split: str, row: dict[str, str]) -> Entry:
        return Entry(row["filename"], [row["scene_label"]])
