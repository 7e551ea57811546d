"""AudioSet-style tags from a raw-waveform encoder: wav2vec 2.0, HuBERT, WavLM, data2vec-audio and kin.

``experts.tagging.type: wav2vec2`` in a pipeline config. Such a model reads the waveform itself, so the
windows of a batch are padded to the longest and the extractor's attention mask goes with them.
There is no default model: name a checkpoint with an audio classification head (``...ForSequenceClassification``)
whose labels include ``music_label``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from fusion_datasets.experts.tagging import AudioClassificationTagger, TaggerConfig
from fusion_datasets.registry import register


@dataclass(frozen=True)
class Wav2Vec2TaggerConfig(TaggerConfig):
    model: str = ""  # a fine-tuned classifier of the wav2vec 2.0 family: there is no default

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise ValueError("model: name an audio classifier of the wav2vec 2.0 family (there is no default)")


@register("tagging", "wav2vec2")
class Wav2Vec2AudioTagger(AudioClassificationTagger):
    """Writes ``audio_tags`` and ``music_score`` with a wav2vec 2.0-family audio classifier.

    Example:
        >>> from fusion_datasets.synthetic import music, write_audio
        >>> tagger = Wav2Vec2AudioTagger(model=str(tiny_zoo["wav2vec2-audioset"]))
        >>> sorted(tagger({"audio": [str(write_audio("music.wav", music(2.0, 16000), 16000))]}))
        ['audio_tags', 'errors', 'music_score']
    """

    config_class = Wav2Vec2TaggerConfig
    model_types = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech",
                   "unispeech-sat", "sew", "sew-d")
    extractor_kwargs: ClassVar[dict[str, Any]] = {"padding": True}  # to the longest window of the call
