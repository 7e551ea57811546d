"""The released FusionAudio data (its JSON format) as this project's ``captions`` and ``qa`` configs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets

from fusion_datasets.builders.base import BuildConfig, FusionBuilder, register
from fusion_datasets.builders.names import clip_key
from fusion_datasets.export.fusionaudio import CAPTION_TASK

_FEATURES = {
    "captions": datasets.Features({
        "id": datasets.Value("string"),
        "audio": datasets.Audio(),
        "audio_id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "caption": datasets.Value("string"),
    }),
    "qa": datasets.Features({
        "id": datasets.Value("string"),
        "clip_id": datasets.Value("string"),
        "audio_id": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "qa_type": datasets.Value("string"),
    }),
}


def qa_type(task: str) -> str:
    """The QA type of a release task name (``Counting and order questions``): inverse of export.qa_task."""
    return task.strip().removesuffix(" questions").strip().lower().replace(" ", "_")


@register("fusionaudio")
class FusionAudioRelease(FusionBuilder):
    """FusionAudio release JSON files (``*.json`` in the data folder, or ``--data-file``): rows with task
    ``Captioning questions`` become ``captions`` (id = the clip's YouTube id or stem), the others ``qa``.
    With ``--audio-root``, captions link their audio; rows whose audio is not there are skipped."""

    BUILDER_CONFIGS = [BuildConfig(name="captions"), BuildConfig(name="qa")]

    @property
    def row_unit(self) -> str:
        return {"captions": "captions", "qa": "QA pairs"}[self.config.name]

    def features(self) -> datasets.Features:
        return _FEATURES[self.config.name]

    def splits(self) -> tuple[str, ...]:
        return (self.config.split or "train",)

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        captions, seen = self.config.name == "captions", set()
        for path in self.json_files(single=False):
            for number, (where, item) in enumerate(self.read_json(path)):
                if (str(item.get("task")) == CAPTION_TASK) != captions:
                    continue
                clip = clip_key(item["audio_id"])
                if not captions:
                    yield {"id": f"{clip}-{path.stem}-{number}", "clip_id": clip,
                           "audio_id": item["audio_id"], "question": str(item.get("instruction") or ""),
                           "answer": item["output"],
                           "qa_type": qa_type(str(item.get("task") or ""))}
                elif clip in seen:
                    self.report.skip("duplicate_clip", where, clip)
                else:
                    audio = self.find_audio(item["audio_id"], where, clip) if self.config.audio_root else None
                    if audio or not self.config.audio_root:
                        seen.add(clip)
                        yield {"id": clip, "audio": audio, "audio_id": item["audio_id"],
                               "source": str(item.get("dataset") or "FusionAudio"), "caption": item["output"]}
