"""AIR-Bench Chat: open-ended questions on sound, music and speech, judged 1-10 against a reference answer."""

from __future__ import annotations

import json
from typing import Any

import datasets

from fusion_datasets.builders.base import register
from fusion_datasets.builders.qa import QA_FEATURES, FusionAudioQABuilder, from_air_bench


@register("air-bench-chat")
class AirBenchChat(FusionAudioQABuilder):
    """AIR-Bench Chat from its own ``Chat/`` folder (``Chat_meta.json``, the audio in
    ``<task_name>_<dataset_name>/``) or the FusionAudio eval JSON; ``meta_info`` (the clip's reference captions
    or transcript, which the judge sees) is kept as the text the JSON gives."""

    FEATURES = datasets.Features({**QA_FEATURES, "meta_info": datasets.Value("string")})

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        return from_air_bench(item)

    def extra(self, item: dict[str, Any], where: str) -> dict[str, Any]:
        meta = item.get("meta_info")
        text = meta if isinstance(meta, str) or meta is None else json.dumps(meta, ensure_ascii=False)
        return {"meta_info": text}
