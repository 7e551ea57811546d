"""Stage 1: expert models that turn clips into contextual cues, as ``datasets.map`` transforms.

Each expert is a model step (:class:`~fusion_datasets.steps.ModelStep`), a picklable callable over a batch dict;
:class:`ExpertChain` runs several on one batch so they share decoded audio and separated tracks. Each expert
stage runs the expert its config's ``type`` names (:mod:`fusion_datasets.registry`).
"""

from fusion_datasets.experts.audio_llm import (
    AudioLLMMusicCaptioner,
    AudioLLMSoundDescriber,
    MusicConfig,
    SoundConfig,
)
from fusion_datasets.experts.chain import ExpertChain
from fusion_datasets.experts.separation import HTDemucsSeparator, SeparationConfig
from fusion_datasets.experts.speech import SpeechConfig, WhisperTranscriber
from fusion_datasets.experts.tagging import ASTAudioTagger, AudioClassificationTagger, TaggerConfig
from fusion_datasets.experts.visual import VideoDescriber, VisualConfig
from fusion_datasets.experts.wav2vec2_tagging import Wav2Vec2AudioTagger, Wav2Vec2TaggerConfig

__all__ = [
    "ASTAudioTagger",
    "AudioClassificationTagger",
    "AudioLLMMusicCaptioner",
    "AudioLLMSoundDescriber",
    "ExpertChain",
    "HTDemucsSeparator",
    "MusicConfig",
    "SeparationConfig",
    "SoundConfig",
    "SpeechConfig",
    "TaggerConfig",
    "VideoDescriber",
    "VisualConfig",
    "Wav2Vec2AudioTagger",
    "Wav2Vec2TaggerConfig",
    "WhisperTranscriber",
]
