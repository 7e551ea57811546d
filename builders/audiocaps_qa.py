"""AudioCaps-QA: open-ended questions on AudioCaps clips, judged 0-5 by an LLM."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.qa import FusionAudioQABuilder


@register("audiocaps-qa")
class AudioCapsQA(FusionAudioQABuilder):
    """AudioCaps-QA in the FusionAudio eval JSON format."""
