"""What the QA benchmarks share: rows of the FusionAudio eval JSON with audio resolved under the audio root.

Each row keeps ``audio_id`` and ``instruction`` as given, so predictions in the FusionAudio format match
their row by ``(audio_id, instruction)``; ``question`` is the instruction without its boilerplate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets

from fusion_datasets.builders.base import FusionBuilder
from fusion_datasets.builders.names import media_stem, source_key

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


class FusionAudioQABuilder(FusionBuilder):
    """A QA benchmark in the FusionAudio eval JSON format (``--data-dir`` with one ``*.json``, or
    ``--data-file``); the authors' absolute audio paths resolve under ``--audio-root``."""

    TEST_SET = True
    FEATURES = QA_FEATURES

    def extra(self, item: dict[str, Any], where: str) -> dict[str, Any] | None:
        """Columns a benchmark adds to a row, or None to skip the row (reported)."""
        return {}

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        for number, (where, item) in enumerate(self.read_json(self.json_files()[0])):
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
