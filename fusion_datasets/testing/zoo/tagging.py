"""Tiny random-weight AudioSet taggers (527 classes): an Audio Spectrogram Transformer and a wav2vec 2.0.

The AST takes the same input as ``MIT/ast-finetuned-audioset-10-10-0.4593`` (128 mel bins, 1024 frames,
i.e. 10.24 s at 16 kHz, patches of 16 with stride 10) and, like it, scores the classes independently
(multi-label: sigmoid scores, also through ``pipeline("audio-classification")``). The wav2vec 2.0 reads
the raw 16 kHz waveform through the real feature encoder's strides (one frame per 20 ms), narrowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_datasets.labels import audioset_labels


def _audioset_head() -> dict[str, Any]:
    """The config keys of a multi-label AudioSet classification head."""
    id2label = {label.index: label.display_name for label in audioset_labels()}
    return {"num_labels": len(id2label), "id2label": id2label, "problem_type": "multi_label_classification",
            "label2id": {name: index for index, name in id2label.items()}}


def build_tiny_ast(path: Path) -> None:
    """Save a tiny ``ASTForAudioClassification`` and its ``ASTFeatureExtractor`` into ``path``."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_mel_bins=128,
        max_length=1024,
        **_audioset_head(),
    )
    torch.manual_seed(0)
    ASTForAudioClassification(config).eval().save_pretrained(path)
    ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length).save_pretrained(path)


def build_tiny_wav2vec2(path: Path) -> None:
    """Save a tiny ``Wav2Vec2ForSequenceClassification`` and its ``Wav2Vec2FeatureExtractor`` into ``path``."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16,) * 7,  # the real kernels and strides: 400-sample receptive field, 320-sample hop
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        classifier_proj_size=32,
        feat_extract_norm="layer",  # as the large models: padded windows come with an attention mask
        do_stable_layer_norm=True,
        **_audioset_head(),
    )
    torch.manual_seed(0)
    Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(path)
