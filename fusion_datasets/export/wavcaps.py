"""WavCaps' JSON: ``{"num_captions_per_audio": 1, "data": [{"id", "audio", "caption", "duration"}]}``.

``audio`` is the clip's file (:class:`~fusion_datasets.export.base.ClipFiles`), ``duration`` its length in
seconds, as WavCaps' retrieval and captioning loaders read them.

Example:
    >>> import json
    >>> from pathlib import Path
    >>> from fusion_datasets.export import export
    >>> export("out", "wavcaps", "wavcaps").written
    {'clips': 4}
    >>> wavcaps = json.loads(Path("wavcaps/wavcaps.json").read_text())
    >>> wavcaps["num_captions_per_audio"], sorted(wavcaps["data"][0])
    (1, ['audio', 'caption', 'duration', 'id'])
"""

from __future__ import annotations

from typing import Any, ClassVar

from fusion_datasets.export.base import PartResult
from fusion_datasets.export.lists import ListExporter

FILE = "wavcaps.json"


class WavCapsExporter(ListExporter):
    format = "wavcaps"
    file = FILE
    head: ClassVar[bytes | None] = b'{"num_captions_per_audio": 1, "data": [\n'
    tail: ClassVar[bytes] = b"]}\n"

    def items(self, row: dict[str, Any], audio: str, duration: float, pairs: list[dict[str, str]],
              result: PartResult) -> list[dict[str, Any]]:
        result.written["clips"] += 1
        return [{"id": row["id"], "audio": audio, "caption": row["caption"], "duration": round(duration, 3)}]
