"""Stage 2 of the paper: an LLM fuses a clip's cues into one fine-grained audio caption.

The cues (tags, sound, speech, music and video descriptions from the experts) go into the versioned
prompt ``fusion_v1`` as one JSON object in a delimited data block; the answer is the paper's JSON
``{"Potential ambiguities": [...], "Audio caption": "..."}`` or the sentinel
``UNCERTAIN_AUDIO_INFORMATION_DETECTED``. Uncertain clips keep ``caption = None`` and
``caption_uncertain = True``: they stay in ``cues`` and never reach ``captions``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fusion_datasets.llm.parsing import SENTINEL, FusionAnswer, parse_fusion_answer
from fusion_datasets.llm.step import ChatStep, ChatStepConfig
from fusion_datasets.media import MediaBatch
from fusion_datasets.prompts import read_prompt

logger = logging.getLogger(__name__)

# prompt data key -> the cue column it comes from (the tags go apart: split by confidence)
_TEXT_CUES = {
    "audio description": "sound_caption",
    "speech content": "asr_text",
    "music description": "music_caption",
    "video description": "video_caption",
}
_CUE_COLUMNS = ("audio_tags", "has_speech", *_TEXT_CUES.values())


@dataclass(frozen=True)
class FusionConfig(ChatStepConfig):
    """Options of :class:`CaptionFuser`. Tags scoring at least ``high_confidence`` are "high-confidence"."""

    prompt: str = read_prompt("fusion_v1")
    prompt_version: str = "fusion_v1"
    placeholder: ClassVar[str] = "{cues_json}"
    max_new_tokens: int = 1024  # reasoning models think before they answer
    keep_reasoning: bool = False
    high_confidence: float = 0.5
    max_cue_chars: int = 1000  # longer cue texts (a hallucinating transcriber) are cut to this

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.high_confidence <= 1.0:
            raise ValueError(f"high_confidence must be between 0 and 1, got {self.high_confidence}")
        if self.max_cue_chars < 1:
            raise ValueError(f"max_cue_chars must be >= 1, got {self.max_cue_chars}")


def format_tags(tags: Sequence[dict[str, Any]]) -> str:
    """Tags as the paper writes them: ``Speech(100%), Music(87%)``."""
    return ", ".join(f"{tag['label']}({round(100 * tag['score'])}%)" for tag in tags)


def fusion_cues(row: dict[str, Any], high_confidence: float = 0.5, max_chars: int = 1000) -> dict[str, str]:
    """The prompt data of one clip from its cue columns; empty or missing cues are left out.

    The transcript counts only where the speech expert did not rule speech out (``has_speech`` false),
    the music description only where the music gate let it through (it is ``None`` elsewhere).

    Example:
        >>> fusion_cues({"audio_tags": [{"label": "Dog", "score": 0.9}], "sound_caption": "A dog barks."})
        {'high-confidence audio tags': 'Dog(90%)', 'audio description': 'A dog barks.'}
    """
    cues: dict[str, str] = {}
    tags = [tag for tag in row.get("audio_tags") or [] if tag.get("label") and tag.get("score") is not None]
    high = [tag for tag in tags if tag["score"] >= high_confidence]
    low = [tag for tag in tags if tag["score"] < high_confidence]
    if high:
        cues["high-confidence audio tags"] = format_tags(high)
    if low:
        cues["low-confidence audio tags"] = format_tags(low)
    for key, column in _TEXT_CUES.items():
        text = (row.get(column) or "").strip()
        if column == "asr_text" and row.get("has_speech") is False:
            continue
        if text:
            cues[key] = text if len(text) <= max_chars else text[:max_chars].rstrip() + " ..."
    return cues


class CaptionFuser(ChatStep[FusionConfig]):
    """Writes ``caption``, ``caption_ambiguities``, ``caption_uncertain``, ``caption_reasoning``, provenance.

    Rows that already have a caption or are uncertain (an earlier run) are kept as they are, so a rerun
    asks again only for the rows that failed. A clip without any cue is uncertain without asking.

    Example:
        >>> fuser = CaptionFuser(backend=BackendConfig(kind="server", model="Qwen/QwQ-32B",
        ...                      base_urls=("http://127.0.0.1:8080",)))  # doctest: +SKIP
        >>> features = fuser.output_features(ds.features)  # doctest: +SKIP
        >>> ds = ds.map(fuser, batched=True, with_rank=True, features=features)  # doctest: +SKIP
    """

    stage = "fusion"
    config_class = FusionConfig
    answer_format = (
        f'the JSON object {{"Potential ambiguities": [...], "Audio caption": "..."}} or {SENTINEL}'
    )

    def result_features(self) -> dict[str, Any]:
        from datasets import List, Value

        return {
            "caption": Value("string"),
            "caption_ambiguities": List(Value("string")),
            "caption_uncertain": Value("bool"),
            "caption_reasoning": Value("string"),
        }

    def reads(self) -> tuple[str, ...]:
        return _CUE_COLUMNS

    def pending_rows(self, media: MediaBatch) -> list[int]:
        captions, uncertain = media.column("caption"), media.column("caption_uncertain")
        return [row for row in range(media.size) if captions[row] is None and uncertain[row] is not True]

    def prompt_data(self, media: MediaBatch, row: int) -> dict[str, Any] | None:
        values = {column: media.batch[column][row] for column in _CUE_COLUMNS if column in media.batch}
        cues = fusion_cues(values, self.config.high_confidence, self.config.max_cue_chars)
        return cues or None

    def parse(self, media: MediaBatch, row: int, text: str) -> FusionAnswer:
        return parse_fusion_answer(text)

    def store(self, outputs: dict[str, list], row: int, result: FusionAnswer | None) -> None:
        if result is None:
            logger.debug("row %d has no cues: uncertain without asking", row)
            result = FusionAnswer(caption=None, uncertain=True)
        outputs["caption"][row] = result.caption
        outputs["caption_ambiguities"][row] = result.ambiguities
        outputs["caption_uncertain"][row] = result.uncertain
        outputs["caption_reasoning"][row] = result.reasoning if self.config.keep_reasoning else None
