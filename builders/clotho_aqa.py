"""Clotho-AQA: closed-ended questions (yes/no and one word) on Clotho clips, 3 answers each."""

from __future__ import annotations

from fusion_datasets.builders.base import register
from fusion_datasets.builders.qa import FusionAudioQABuilder


@register("clotho-aqa")
class ClothoAQA(FusionAudioQABuilder):
    """Clotho-AQA in the FusionAudio eval JSON format."""
