"""Sound and music descriptions from an audio LLM (Qwen2-Audio by default).

The paper describes every clip with GAMA ("sound") and, where an AudioSet tagger hears music, describes
the music with OpenMu ("music"). Neither is a transformers model, so both experts here run one audio LLM,
``Qwen/Qwen2-Audio-7B-Instruct`` by default (or another family of :mod:`fusion_datasets.experts.audio_lm`),
with the paper's prompts (versioned files under ``fusion_datasets/prompts/``). They share one
implementation and differ in prompt, gate and columns; either runs in this process or asks a server
(:mod:`fusion_datasets.experts.served`).

Clips are cut to ``max_seconds`` before the model sees them; a family takes at most its own longest
clip (Qwen2-Audio's processor pads or truncates every clip to its 30 s window).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fusion_datasets.experts.audio_lm import AudioLM, load_audio_lm
from fusion_datasets.experts.served import (
    AUDIO_FORMATS,
    AUDIO_PARTS,
    ServedExpert,
    ServedOptions,
    ask_server,
    audio_part,
    served_audio,
)
from fusion_datasets.media import MIX, MediaBatch
from fusion_datasets.prompts import read_prompt
from fusion_datasets.registry import register
from fusion_datasets.steps import ModelConfig, ModelConfigT, ModelStep

logger = logging.getLogger(__name__)

MUSIC_SCORE = "music_score"


MIN_SECONDS = 1.0  # a clip of a few samples gives the processor no audio token: silence pads it to this


def _at_least(samples: np.ndarray, size: int) -> np.ndarray:
    return np.pad(samples, (0, max(0, size - len(samples))))


@dataclass(frozen=True)
class AudioLLMConfig(ModelConfig, ServedOptions):
    """Generation options shared by the audio-LLM experts; ``prompt`` is part of the fingerprint.

    Served (``backend.kind: server``), the clip goes at ``sampling_rate`` as ``audio_part`` in
    ``audio_format`` (``None``: the served model family's default, :data:`~fusion_datasets.experts.served.FAMILIES`).
    """

    model: str = "Qwen/Qwen2-Audio-7B-Instruct"
    prompt: str = ""
    max_new_tokens: int = 256
    track: str = MIX  # "accompaniment" describes the clip without its vocals (needs separation first)
    max_seconds: float = 30.0  # clips are cut to this (Qwen2-Audio's processor takes 30 s at most)
    sampling_rate: int | None = None
    audio_part: str | None = None
    audio_format: str = "wav"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_served()
        if self.audio_part is not None and self.audio_part not in AUDIO_PARTS:
            raise ValueError(f"audio_part must be one of {', '.join(AUDIO_PARTS)}, got {self.audio_part!r}")
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio_format must be one of {', '.join(AUDIO_FORMATS)}, got {self.audio_format!r}")
        if not self.prompt.strip():
            raise ValueError(f"prompt must be a non-empty instruction, got {self.prompt!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")


@dataclass(frozen=True)
class SoundConfig(AudioLLMConfig):
    prompt: str = read_prompt("sound_v1")
    prompt_version: str = "sound_v1"  # the bundled prompt it is; the card says `custom` for another text


@dataclass(frozen=True)
class MusicConfig(AudioLLMConfig):
    prompt: str = read_prompt("music_v1")
    prompt_version: str = "music_v1"
    music_threshold: float = 0.5  # a clip has music when its tagger music_score is at least this

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.music_threshold <= 1.0:
            raise ValueError(f"music_threshold must be between 0 and 1, got {self.music_threshold}")


class AudioLLMExpert(ServedExpert, ModelStep[ModelConfigT]):
    """The shared part: the audio LLM answers ``config.prompt`` for chosen rows, one generate per batch
    in this process, or one request per row to its server."""

    config_class: ClassVar[type[AudioLLMConfig]]

    def reads(self) -> tuple[str, ...]:
        return (*super().reads(), self.config.track)

    def _load(self, device: str, dtype: Any) -> AudioLM:
        return load_audio_lm(self.config.model, device, dtype, self.config.max_seconds, **self.pretrained_kwargs())

    def _generate(self, lm: AudioLM, clips: list[np.ndarray], prompts: Sequence[str]) -> list[str]:
        """Greedy answers to ``prompts`` (one per clip) about 1-D ``clips`` at the model's rate."""
        return lm.generate(clips, prompts, self.config.max_new_tokens)

    def describe(self, media: MediaBatch, rank: int | None, rows: Sequence[int],
                 prompts: Sequence[str] | None = None) -> list[str | None]:
        """An answer for each of ``rows`` (``None`` elsewhere or where it failed); no rows: no load.

        ``prompts`` gives each row of the batch its own prompt (default: ``config.prompt`` for all).
        """
        prompts = [self.config.prompt] * media.size if prompts is None else prompts
        descriptions: list[str | None] = [None] * media.size
        if not rows:
            return descriptions
        if self.config.backend is not None:
            answers = self._ask_server(media, rows, prompts)
        else:
            lm = self.load(rank, self._load)
            clips = self._clips(media, rows, lm.sampling_rate)
            answers = self.run_guarded(media, list(clips), lambda subset: self._generate(
                lm, [clips[row] for row in subset], [prompts[row] for row in subset]))
        for row, description in answers.items():
            descriptions[row] = description
        return descriptions

    def _clips(self, media: MediaBatch, rows: Sequence[int], rate: int) -> dict[int, np.ndarray]:
        """Each decodable row's mono samples at ``rate``: cut to ``max_seconds``, padded to ``MIN_SECONDS``."""
        decoded = media.audio(rate, track=self.config.track)
        limit, shortest = int(self.config.max_seconds * rate), int(MIN_SECONDS * rate)
        return {row: _at_least(decoded[row][0, :limit], shortest) for row in rows if decoded[row] is not None}

    def _ask_server(self, media: MediaBatch, rows: Sequence[int], prompts: Sequence[str]) -> dict[int, str]:
        """Each decodable row's answer from the server: the clip at the served rate, cut as in process."""
        config = self.config
        served = served_audio(config.backend.model, config.sampling_rate, config.audio_part)
        clips = self._clips(media, rows, served.sampling_rate)
        requests = {row: [audio_part(samples, served.sampling_rate, served.audio_part, config.audio_format),
                          {"type": "text", "text": prompts[row]}] for row, samples in clips.items()}
        return ask_server(config, media, self.stage, requests, config.max_new_tokens)


@register("sound", "audio-llm")
class AudioLLMSoundDescriber(AudioLLMExpert[SoundConfig]):
    """Writes ``sound_caption``: a description of everything heard in the clip (the paper's GAMA step).

    Example:
        >>> from fusion_datasets.synthetic import noise, write_audio
        >>> describer = AudioLLMSoundDescriber(model=str(tiny_zoo["qwen2-audio"]), max_new_tokens=4)
        >>> sorted(describer({"audio": [str(write_audio("noise.wav", noise(2.0, 16000), 16000))]}))
        ['errors', 'sound_caption']
    """

    stage = "sound"
    config_class = SoundConfig
    fusion_texts: ClassVar[dict[str, str]] = {"audio description": "sound_caption"}
    qa_texts = fusion_texts
    coverage: ClassVar[dict[str, str]] = {"sound": "sound_caption"}

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {"sound_caption": Value("string")}

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        return {"sound_caption": self.describe(media, rank, range(media.size))}


@register("music", "audio-llm")
class AudioLLMMusicCaptioner(AudioLLMExpert[MusicConfig]):
    """Writes ``has_music`` and, only where it is true, ``music_caption`` (the paper's OpenMu step).

    Reads ``music_score`` from the tagging expert (:class:`~fusion_datasets.experts.tagging.ASTAudioTagger`),
    run before it in the same :class:`~fusion_datasets.experts.chain.ExpertChain` or an earlier map.
    ``has_music`` is ``None`` where ``music_score`` is; clips without music never reach the model.

    Example:
        >>> from fusion_datasets.synthetic import music, write_audio
        >>> clip = str(write_audio("music.wav", music(2.0, 16000), 16000))
        >>> captioner = AudioLLMMusicCaptioner(model=str(tiny_zoo["qwen2-audio"]), max_new_tokens=4)
        >>> captions = captioner({"audio": [clip] * 3, "music_score": [0.9, 0.1, None]})
        >>> captions["has_music"], [caption is not None for caption in captions["music_caption"]]
        ([True, False, None], [True, False, False])
    """

    stage = "music"
    config_class = MusicConfig
    # the music gate left music_caption None where it found no music: no cue there
    fusion_texts: ClassVar[dict[str, str]] = {"music description": "music_caption"}
    qa_texts = fusion_texts
    coverage: ClassVar[dict[str, str]] = {"music": "music_caption"}

    def reads(self) -> tuple[str, ...]:
        return (*super().reads(), MUSIC_SCORE)

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {"has_music": Value("bool"), "music_caption": Value("string")}

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        if MUSIC_SCORE not in media.batch:
            raise ValueError(
                f"{type(self).__name__} gates on the {MUSIC_SCORE!r} column, which this batch lacks: "
                "run the tagging expert (ASTAudioTagger) first, earlier in the same ExpertChain "
                "or in an earlier map"
            )
        threshold = self.config.music_threshold
        scores = media.column(MUSIC_SCORE)
        has_music = [None if score is None else bool(score >= threshold) for score in scores]
        rows = [row for row, music in enumerate(has_music) if music]
        return {"has_music": has_music, "music_caption": self.describe(media, rank, rows)}
