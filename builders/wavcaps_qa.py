"""WavCaps-QA: open-ended questions on WavCaps clips, judged 0-5 by an LLM."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.qa import FusionAudioQABuilder


@register("wavcaps-qa")
class WavCapsQA(FusionAudioQABuilder):
    """WavCaps-QA in the FusionAudio eval JSON format."""
