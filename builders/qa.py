"""What the QA benchmarks share: rows of the FusionAudio eval JSON with audio resolved under the audio root.

Each row keeps ``audio_id`` and ``instruction`` as given, so predictions in the FusionAudio format match
their row by ``(audio_id, instruction)``; ``question`` is the instruction without its boilerplate.
AIR-Bench's own meta files (``Foundation_meta.json``, ``Chat_meta.json``) are read too: see :func:`from_air_bench`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import datasets

from fusion_datasets.builders.base import FusionBuilder
from fusion_datasets.builders.names import media_stem, source_key
from fusion_datasets.builders.readers import read_json_rows

QA_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "clip_id": datasets.Value("string"),
    "audio": datasets.Audio(),
    "audio_id": datasets.Value("string"),
    "instruction": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answer": datasets.Value("string"),
    "dataset": datasets.Value("string"),
    "task": datasets.Value("string"),
})


AIR_BENCH_FIELDS = ("path", "question", "answer_gt", "task_name", "dataset_name")


def from_air_bench(item: dict[str, Any], instruction: str | None = None) -> dict[str, Any]:
    """A row of AIR-Bench's own meta file in the FusionAudio shape; a row without its fields, unchanged.

    The audio is ``<task_name>_<dataset_name>/<path>`` (Audio_Grounding's as ``.flac``), where AIR-Bench's
    inference scripts load it; ``instruction`` defaults to the row's ``question``.

    Example:
        >>> from_air_bench({"path": "58939.wav", "question": "What is it?", "answer_gt": "Rain",
        ...                 "task_name": "Sound_AQA", "dataset_name": "avqa", "uniq_id": 7})["audio_id"]
        'Sound_AQA_avqa/58939.wav'
    """
    if not all(isinstance(item.get(field), str) for field in AIR_BENCH_FIELDS):
        return item
    path = PurePosixPath(item["path"])
    if item["task_name"] == "Audio_Grounding":  # the meta file says .wav; the files are .flac
        path = path.with_suffix(".flac")
    return {**item, "audio_id": f"{item['task_name']}_{item['dataset_name']}/{path}",
            "instruction": instruction or item["question"], "input": "", "dataset": item["dataset_name"],
            "task": item["task_name"], "output": item["answer_gt"]}


class FusionAudioQABuilder(FusionBuilder):
    """A QA benchmark in the FusionAudio eval JSON format (``--data-dir`` with one ``*.json``, or
    ``--data-file``); the authors' absolute audio paths resolve under ``--audio-root``."""

    TEST_SET = True
    FEATURES = QA_FEATURES
    ROW_UNIT = "questions"

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` in the FusionAudio eval JSON shape (a benchmark's own layout is converted here)."""
        return item

    def extra(self, item: dict[str, Any], where: str) -> dict[str, Any] | None:
        """Columns a benchmark adds to a row, or None to skip the row (reported)."""
        return {}

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        items = read_json_rows(self.json_files()[0], self.report, self.config.encoding, self.normalize)
        for number, (where, item) in enumerate(items):
            key = source_key(item["audio_id"])
            self.benchmark_clips.add(key)
            instruction = item.get("instruction")
            if not isinstance(instruction, str) or not instruction.strip():
                self.report.skip("empty_field", where, "no instruction")
                continue
            extra = self.extra(item, where)
            stem = media_stem(item["audio_id"])
            audio = None if extra is None else self.find_audio(item["audio_id"], where, stem)
            if audio:
                yield {"id": f"{stem}-{number}", "clip_id": key[0], "audio": audio,
                       "audio_id": item["audio_id"], "instruction": instruction,
                       "question": instruction.strip(), "answer": item["output"],
                       "dataset": str(item.get("dataset") or ""),
                       "task": str(item.get("task") or ""), **extra}
