"""Stage 2 of the paper: an LLM fuses a clip's cues into one fine-grained audio caption.

The cues (tags, sound, speech, music and video descriptions from the experts) go into the versioned
prompt ``fusion_v1`` as one JSON object in a delimited data block; the answer is the paper's JSON
``{"Potential ambiguities": [...], "Audio caption": "..."}`` or the sentinel
``UNCERTAIN_AUDIO_INFORMATION_DETECTED``. Uncertain clips keep ``caption = None`` and
``caption_uncertain = True``: they stay in ``cues`` and never reach ``captions``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fusion_datasets.cues import CueOptions
from fusion_datasets.llm.parsing import SENTINEL, FusionAnswer, parse_fusion_answer
from fusion_datasets.llm.step import ChatStepConfig, CueStep
from fusion_datasets.media import MediaBatch
from fusion_datasets.prompts import read_prompt
from fusion_datasets.registry import register, stage_classes
from fusion_datasets.steps import Step

logger = logging.getLogger(__name__)
DEFAULT_PROMPT = read_prompt("fusion_v1")


@dataclass(frozen=True)
class FusionConfig(ChatStepConfig):
    """Options of :class:`CaptionFuser`. Tags scoring at least ``high_confidence`` are "high-confidence"."""

    prompt: str = DEFAULT_PROMPT
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


def fusion_cues(
    row: Mapping[str, Any],
    high_confidence: float = 0.5,
    max_chars: int = 1000,
    experts: Sequence[type[Step]] | None = None,
    prompt: str = DEFAULT_PROMPT,
) -> dict[str, str]:
    """The prompt data of one clip: the cues each of ``experts`` (default: each stage's default) gives
    (:meth:`~fusion_datasets.steps.Step.fusion_cues`; empty or missing cues are left out), in
    the order ``prompt`` names their keys (quoted), then the keys it does not name, in stage order.

    Example:
        >>> fusion_cues({"audio_tags": [{"label": "Dog", "score": 0.9}], "sound_caption": "A dog barks."})
        {'high-confidence audio tags': 'Dog(90%)', 'audio description': 'A dog barks.'}
    """
    options = CueOptions(high_confidence, max_chars)
    cues: dict[str, str] = {}
    for expert in stage_classes() if experts is None else experts:
        cues.update(expert.fusion_cues(row, options))

    def position(key: str) -> int:
        found = prompt.find(json.dumps(key))
        return found if found >= 0 else len(prompt)

    return dict(sorted(cues.items(), key=lambda item: position(item[0])))


@register("fusion", "llm")
class CaptionFuser(CueStep[FusionConfig]):
    """Writes ``caption``, ``caption_ambiguities``, ``caption_uncertain``, ``caption_reasoning``, provenance.

    Rows that already have a caption or are uncertain (an earlier run) are kept as they are, so a rerun
    asks again only for the rows that failed. A clip without any cue is uncertain without asking.

    Example (the tiny zoo's fusion LM answers one fixed caption, whatever it is shown):
        >>> from datasets import Dataset
        >>> from fusion_datasets.chat.backends import TransformersBackendConfig
        >>> cues = Dataset.from_dict({"id": ["dog"], "audio_tags": [[{"label": "Dog", "score": 0.9}]],
        ...                           "sound_caption": ["a dog barks"]})
        >>> fuser = CaptionFuser(backend=TransformersBackendConfig(model=str(tiny_zoo["fusion-lm"])))
        >>> fuser.prompt_data(MediaBatch(cues[:]), 0)
        {'high-confidence audio tags': 'Dog(90%)', 'audio description': 'a dog barks'}
        >>> fused = cues.map(fuser, batched=True, with_rank=True, features=fuser.output_features(cues.features))
        >>> fused[0]["caption"], fused[0]["caption_uncertain"]
        ('A dog barks twice while one car passes by on the wet road.', False)
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
        return tuple(column for expert in self.experts for column in expert.fusion_columns())

    def data_counts(self, cues: Any) -> dict[str, Any]:
        """Clips with a fused caption, and those the fusion LLM judged uncertain."""
        return {name: sum(1 for value in cues[column] if value)
                for name, column in (("captioned", "caption"), ("uncertain", "caption_uncertain"))}

    def pending_rows(self, media: MediaBatch) -> list[int]:
        captions, uncertain = media.column("caption"), media.column("caption_uncertain")
        return [row for row in range(media.size) if captions[row] is None and uncertain[row] is not True]

    def prompt_data(self, media: MediaBatch, row: int) -> dict[str, Any] | None:
        config = self.config
        cues = fusion_cues(self.row_values(media, row), config.high_confidence, config.max_cue_chars,
                           self.experts, config.prompt)
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
