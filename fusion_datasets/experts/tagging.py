"""AudioSet tags with confidences, and the music score that gates the music captioner.

The paper tags clips with an AudioSet classifier (and gates music with YamNet); the default here is
``MIT/ast-finetuned-audioset-10-10-0.4593``. Clips longer than the model's window are cut into
windows whose scores are max-pooled, as AudioSet taggers are evaluated.

:class:`AudioClassificationTagger` does that for any ``AutoModelForAudioClassification`` model;
:class:`ASTAudioTagger` (``type: ast``) is the default, other families subclass it in their own module
(:mod:`fusion_datasets.experts.wav2vec2_tagging`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fusion_datasets.cues import CueOptions, format_tags
from fusion_datasets.media import MediaBatch, windows
from fusion_datasets.registry import register
from fusion_datasets.steps import ModelConfig, ModelStep


@dataclass(frozen=True)
class TaggerConfig(ModelConfig):
    model: str = "MIT/ast-finetuned-audioset-10-10-0.4593"
    top_k: int = 10
    min_score: float = 0.05
    window_seconds: float = 10.0
    activation: str = "sigmoid"  # AudioSet is multi-label; "softmax" for single-label classifiers
    music_label: str = "Music"
    keep_source_tags: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.activation not in ("sigmoid", "softmax"):
            raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {self.activation!r}")


@dataclass
class _Tagger:
    model: Any
    feature_extractor: Any
    labels: list[str]
    device: str
    dtype: Any


class AudioClassificationTagger(ModelStep[TaggerConfig]):
    """Writes ``audio_tags`` (``[{"label", "score"}]``, best first) and ``music_score`` with a
    transformers ``AutoModelForAudioClassification`` model; subclasses say which models and how the
    feature extractor batches windows of different lengths.

    Rows that already carry human labels in ``audio_tags`` (AudioSet) keep them (score 1.0 from the
    builder); ``music_score`` always comes from the model.
    """

    stage = "tagging"
    config_class = TaggerConfig
    model_types: ClassVar[tuple[str, ...] | None] = None  # the transformers model types it runs (None: any)
    extractor_kwargs: ClassVar[dict[str, Any]] = {}  # for the feature extractor's call
    @classmethod
    def fusion_columns(cls) -> tuple[str, ...]:
        return ("audio_tags",)

    qa_columns = fusion_columns

    @classmethod
    def fusion_cues(cls, row: Mapping[str, Any], options: CueOptions) -> dict[str, str]:
        """The tags split by ``options.high_confidence``, as the paper's prompt takes them."""
        tags = [tag for tag in row.get("audio_tags") or [] if tag.get("label") and tag.get("score") is not None]
        high = [tag for tag in tags if tag["score"] >= options.high_confidence]
        low = [tag for tag in tags if tag["score"] < options.high_confidence]
        cues = {"high-confidence audio tags": format_tags(high), "low-confidence audio tags": format_tags(low)}
        return {key: text for key, text in cues.items() if text}

    @classmethod
    def qa_context(cls, row: Mapping[str, Any]) -> dict[str, str]:
        """The tags' labels, without scores."""
        labels = [tag["label"] for tag in row.get("audio_tags") or [] if tag.get("label")]
        return {"audio tags": ", ".join(labels)} if labels else {}

    def features(self) -> dict[str, Any]:
        from datasets import List, Value

        tags = List({"label": Value("string"), "score": Value("float32")})
        return {"audio_tags": tags, "music_score": Value("float32")}

    def _load(self, device: str, dtype: Any) -> _Tagger:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        from transformers.models.auto.modeling_auto import MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES

        self.check_architecture(self.model_types or tuple(MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES))
        kwargs = self.pretrained_kwargs()
        model = AutoModelForAudioClassification.from_pretrained(self.config.model, dtype=dtype, **kwargs)
        labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
        extractor = AutoFeatureExtractor.from_pretrained(self.config.model, **kwargs)
        return _Tagger(model.to(device).eval(), extractor, labels, device, dtype)

    def _scores(self, tagger: _Tagger, clips: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        rate = tagger.feature_extractor.sampling_rate
        # the extractor's filterbank needs at least one 25 ms frame; it zero-pads to its window anyway
        size = int(self.config.window_seconds * rate)
        pieces = [windows(clip[0], size, min_size=rate // 10) for clip in clips]
        flat = [piece for clip_pieces in pieces for piece in clip_pieces]
        features = tagger.feature_extractor(flat, sampling_rate=rate, return_tensors="pt", **self.extractor_kwargs)
        with torch.inference_mode():
            inputs = {name: value.to(tagger.device, tagger.dtype if value.is_floating_point() else None)
                      for name, value in features.items()}
            logits = tagger.model(**inputs).logits.float()
        probabilities = logits.sigmoid() if self.config.activation == "sigmoid" else logits.softmax(-1)
        per_window = probabilities.cpu().numpy()
        bounds = np.cumsum([0] + [len(clip_pieces) for clip_pieces in pieces])
        return [per_window[start:end].max(axis=0) for start, end in zip(bounds[:-1], bounds[1:])]

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        outputs = self.empty_outputs(media.size)
        tagger = self.load(rank, self._load, self.model_types)  # each class checks the model its own way
        if self.config.music_label not in tagger.labels:
            raise ValueError(f"{self.config.model!r} has no {self.config.music_label!r} label to gate music with")
        clips = media.audio(tagger.feature_extractor.sampling_rate)
        rows = [row for row, clip in enumerate(clips) if clip is not None]
        scores = self.run_guarded(media, rows, lambda subset: self._scores(tagger, [clips[row] for row in subset]))
        music = tagger.labels.index(self.config.music_label)
        source_tags = media.column("audio_tags")
        for row, clip_scores in scores.items():
            outputs["music_score"][row] = float(clip_scores[music])
            if self.config.keep_source_tags and source_tags[row]:
                outputs["audio_tags"][row] = list(source_tags[row])
                continue
            best = np.argsort(-clip_scores)[: self.config.top_k]
            outputs["audio_tags"][row] = [
                {"label": tagger.labels[index], "score": float(clip_scores[index])}
                for index in best
                if clip_scores[index] >= self.config.min_score
            ]
        return outputs


@register("tagging", "ast")
class ASTAudioTagger(AudioClassificationTagger):
    """The default tagger (``type: ast``): an Audio Spectrogram Transformer, as the paper's AudioSet tagger.

    Its feature extractor pads or cuts every window to the model's input length. It runs any other
    audio classifier whose extractor does the same (a Whisper encoder's pads to 30 s) as it did before
    there were types.

    Example:
        >>> from fusion_datasets.synthetic import music, write_audio
        >>> tagger = ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]))  # MIT/ast-finetuned-audioset-10-10-0.4593
        >>> tags = tagger({"audio": [str(write_audio("music.wav", music(2.0, 16000), 16000))]})
        >>> sorted(tags), sorted(tags["audio_tags"][0][0])
        (['audio_tags', 'errors', 'music_score'], ['label', 'score'])
    """
