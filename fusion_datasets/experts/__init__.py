"""Stage 1: expert models that turn clips into contextual cues, as ``datasets.map`` transforms.

Each expert is a picklable callable over a batch dict (see :mod:`fusion_datasets.experts.base`);
:class:`ExpertChain` runs several on one batch so they share decoded audio and separated tracks.
"""

from fusion_datasets.experts.audio_llm import (
    AudioLLMMusicCaptioner,
    AudioLLMSoundDescriber,
    MusicConfig,
    SoundConfig,
)
from fusion_datasets.experts.base import Expert, ExpertConfig
from fusion_datasets.experts.chain import ExpertChain
from fusion_datasets.experts.separation import HTDemucsSeparator, SeparationConfig
from fusion_datasets.experts.speech import SpeechConfig, WhisperTranscriber
from fusion_datasets.experts.tagging import ASTAudioTagger, TaggerConfig
from fusion_datasets.experts.visual import VideoDescriber, VisualConfig

# The stage names a pipeline config uses, in the paper's order (separation before speech, tagging
# before the music gate).
EXPERTS: dict[str, type[Expert]] = {
    "separation": HTDemucsSeparator,
    "speech": WhisperTranscriber,
    "tagging": ASTAudioTagger,
    "sound": AudioLLMSoundDescriber,
    "music": AudioLLMMusicCaptioner,
    "visual": VideoDescriber,
}

__all__ = [
    "EXPERTS",
    "ASTAudioTagger",
    "AudioLLMMusicCaptioner",
    "AudioLLMSoundDescriber",
    "Expert",
    "ExpertChain",
    "ExpertConfig",
    "HTDemucsSeparator",
    "MusicConfig",
    "SeparationConfig",
    "SoundConfig",
    "SpeechConfig",
    "TaggerConfig",
    "VideoDescriber",
    "VisualConfig",
    "WhisperTranscriber",
]
