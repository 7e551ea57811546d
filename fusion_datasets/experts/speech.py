"""Speech recognition with Whisper on the separated vocal track.

The paper transcribes the Demucs vocal track with ``openai/whisper-large-v3``. Clips longer than
Whisper's 30 s window are cut into windows (not truncated) whose texts are joined. Language and
no-speech probability come, as in OpenAI's Whisper, from one decoder step at ``<|startoftranscript|>``;
that step's encoder output is then reused by ``generate``, so the encoder runs once per window.
Windows quieter than ``silence_dbfs`` never reach the model: silence costs nothing and cannot
make Whisper hallucinate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fusion_datasets.cues import CueOptions
from fusion_datasets.media import MediaBatch, windows
from fusion_datasets.registry import register
from fusion_datasets.steps import ModelConfig, ModelStep

# "<|nospeech|>" since large-v3, "<|nocaptions|>" before it
_NO_SPEECH_TOKENS = ("<|nospeech|>", "<|nocaptions|>")
_TASKS = ("transcribe", "translate")
_PROMPT_LENGTH = 4  # <|startoftranscript|> <|language|> <|task|> <|notimestamps|>


@dataclass(frozen=True)
class SpeechConfig(ModelConfig):
    model: str = "openai/whisper-large-v3"
    track: str = "vocals"  # rows without a separated vocal track fall back to the mix
    language: str | None = None  # None: detected per clip; else a code ("en") or a name ("english")
    task: str = "transcribe"
    no_speech_threshold: float = 0.6
    silence_dbfs: float = -60.0
    max_new_tokens: int = 128
    chunk_seconds: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in _TASKS:
            raise ValueError(f"task must be one of {', '.join(_TASKS)}, got {self.task!r}")
        if not 0 < self.chunk_seconds <= 30:
            raise ValueError(f"chunk_seconds must be in (0, 30], got {self.chunk_seconds!r}")


@dataclass
class _Whisper:
    model: Any
    processor: Any
    no_speech_id: int
    language_ids: list[int]
    language_codes: list[str]  # "en" for each id of ``language_ids``
    device: str
    dtype: Any


@dataclass(frozen=True)
class _Transcript:
    text: str
    language: str
    no_speech_prob: float


def whisper_windows(samples: np.ndarray, rate: int, seconds: float) -> list[np.ndarray]:
    """Cut a 1-D signal into consecutive ``seconds``-long windows (the last one may be shorter).

    Example:
        >>> [len(w) for w in whisper_windows(np.zeros(65 * 16000), 16000, 30.0)]
        [480000, 480000, 80000]
    """
    return windows(samples, int(round(seconds * rate)))


def dbfs(samples: np.ndarray) -> float:
    """The RMS level of ``samples`` in dB relative to full scale (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else -np.inf


def _language_code(language: str | None, known: list[str]) -> str | None:
    """``language`` ("en" or "english") as one of the ``known`` codes; ``None`` stays ``None`` (detect)."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    if language is None:
        return None
    code = TO_LANGUAGE_CODE.get(language.lower(), language.lower())
    if code not in known:
        raise ValueError(f"language {language!r} is not one of this Whisper's languages ({', '.join(known)})")
    return code


@register("speech", "whisper")
class WhisperTranscriber(ModelStep[SpeechConfig]):
    """Writes ``asr_text``, ``asr_language`` (ISO code), ``asr_no_speech_prob`` and ``has_speech``.

    Silent clips get ``asr_text=""``, ``asr_language=None``, ``asr_no_speech_prob=None`` (the model
    never saw them) and ``has_speech=False``.

    Example:
        >>> from fusion_datasets.synthetic import silence, write_audio
        >>> expert = WhisperTranscriber(model=str(tiny_zoo["whisper"]), max_new_tokens=4)  # openai/whisper-large-v3
        >>> expert({"audio": [str(write_audio("silence.wav", silence(2.0, 16000), 16000))]})
        {'asr_text': [''], 'asr_language': [None], 'asr_no_speech_prob': [None], 'has_speech': [False], 'errors': [[]]}
    """

    stage = "speech"
    config_class = SpeechConfig
    # not in QA: answers must not quote what is said
    fusion_texts: ClassVar[dict[str, str]] = {"speech content": "asr_text"}
    coverage: ClassVar[dict[str, str]] = {"speech": "has_speech"}

    @classmethod
    def fusion_columns(cls) -> tuple[str, ...]:
        return ("has_speech", *super().fusion_columns())

    @classmethod
    def fusion_cues(cls, row: Mapping[str, Any], options: CueOptions) -> dict[str, str]:
        """The transcript, unless the expert ruled speech out (``has_speech`` false)."""
        return {} if row.get("has_speech") is False else super().fusion_cues(row, options)

    def reads(self) -> tuple[str, ...]:
        return (*super().reads(), self.config.track)

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {
            "asr_text": Value("string"),
            "asr_language": Value("string"),
            "asr_no_speech_prob": Value("float32"),
            "has_speech": Value("bool"),
        }

    def _load(self, device: str, dtype: Any) -> _Whisper:
        from transformers import AutoProcessor, WhisperForConditionalGeneration

        self.check_architecture(("whisper",))
        kwargs = self.pretrained_kwargs()
        model = WhisperForConditionalGeneration.from_pretrained(self.config.model, dtype=dtype, **kwargs)
        lang_to_id = getattr(model.generation_config, "lang_to_id", None)
        if not lang_to_id:
            raise ValueError(f"{self.config.model!r} is English-only; use a multilingual Whisper")
        processor = AutoProcessor.from_pretrained(self.config.model, **kwargs)
        vocab = processor.tokenizer.get_vocab()
        no_speech = [vocab[token] for token in _NO_SPEECH_TOKENS if token in vocab]
        if not no_speech:
            raise ValueError(
                f"{self.config.model!r} has no no-speech token ({' or '.join(_NO_SPEECH_TOKENS)})"
            )
        return _Whisper(
            model.to(device).eval(),
            processor,
            no_speech[0],
            list(lang_to_id.values()),
            [token[2:-2] for token in lang_to_id],
            device,
            dtype,
        )

    def _transcribe(
        self, whisper: _Whisper, clips: list[list[np.ndarray]], language: str | None
    ) -> list[_Transcript]:
        """One transcript per clip (a list of windows) from one batch of all windows; ``None`` detects."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        flat = [window for clip in clips for window in clip]
        bounds = np.cumsum([0] + [len(clip) for clip in clips])
        spans = list(zip(bounds[:-1], bounds[1:]))
        extractor = whisper.processor.feature_extractor
        features = extractor(flat, sampling_rate=extractor.sampling_rate, return_tensors="pt").input_features
        model = whisper.model
        start_id = model.generation_config.decoder_start_token_id
        with torch.inference_mode():
            start = torch.full((len(flat), 1), start_id, device=whisper.device)
            first = model(input_features=features.to(whisper.device, whisper.dtype), decoder_input_ids=start,
                          use_cache=False)
            probabilities = first.logits[:, -1].float().softmax(-1).cpu()
            no_speech = probabilities[:, whisper.no_speech_id].numpy()
            detected = probabilities[:, whisper.language_ids].argmax(-1).numpy()
            # a clip's language is that of its window most likely to hold speech, not of a silent intro
            languages = [
                language or whisper.language_codes[detected[begin + np.argmin(no_speech[begin:end])]]
                for begin, end in spans
            ]
            sequences = model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=first.encoder_last_hidden_state),
                language=[code for code, clip in zip(languages, clips) for _ in clip],
                task=self.config.task,
                max_new_tokens=self.config.max_new_tokens,
            )
        texts = [text.strip() for text in whisper.processor.batch_decode(sequences, skip_special_tokens=True)]
        return [
            _Transcript(" ".join(filter(None, texts[begin:end])), code, float(no_speech[begin:end].min()))
            for (begin, end), code in zip(spans, languages)
        ]

    def _checked_language(self, whisper: _Whisper) -> str | None:
        """The language code to force (``None``: detect), once the settings are checked against the model.

        Checked on every batch, not at load: the loaded model is shared by experts with other settings.
        """
        longest = whisper.model.config.max_target_positions - _PROMPT_LENGTH
        if self.config.max_new_tokens > longest:
            raise ValueError(f"max_new_tokens must be at most {longest}, got {self.config.max_new_tokens}")
        return _language_code(self.config.language, whisper.language_codes)

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        outputs = self.empty_outputs(media.size)
        whisper = self.load(rank, self._load)
        rate = whisper.processor.feature_extractor.sampling_rate
        language = self._checked_language(whisper)
        heard: dict[int, list[np.ndarray]] = {}
        for row, clip in enumerate(media.audio(rate, track=self.config.track)):
            if clip is None:
                continue
            pieces = whisper_windows(clip[0], rate, self.config.chunk_seconds)
            loud = [piece for piece in pieces if dbfs(piece) >= self.config.silence_dbfs]
            if loud:
                heard[row] = loud
            else:
                outputs["asr_text"][row], outputs["has_speech"][row] = "", False
        transcripts = self.run_guarded(
            media, list(heard), lambda rows: self._transcribe(whisper, [heard[row] for row in rows], language)
        )
        for row, transcript in transcripts.items():
            outputs["asr_text"][row] = transcript.text
            outputs["asr_language"][row] = transcript.language
            outputs["asr_no_speech_prob"][row] = transcript.no_speech_prob
            speech = transcript.no_speech_prob < self.config.no_speech_threshold
            outputs["has_speech"][row] = speech and bool(transcript.text)
        return outputs
