"""A tiny random-weight Audio Spectrogram Transformer with the 527 AudioSet classes.

It takes the same input as ``MIT/ast-finetuned-audioset-10-10-0.4593`` (128 mel bins, 1024 frames,
i.e. 10.24 s at 16 kHz, patches of 16 with stride 10) and, like it, scores the classes independently
(multi-label: sigmoid scores, also through ``pipeline("audio-classification")``).
"""

from __future__ import annotations

from pathlib import Path

from fusion_datasets.labels import audioset_labels


def build_tiny_ast(path: Path) -> None:
    """Save a tiny ``ASTForAudioClassification`` and its ``ASTFeatureExtractor`` into ``path``."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    id2label = {label.index: label.display_name for label in audioset_labels()}
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_mel_bins=128,
        max_length=1024,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
        problem_type="multi_label_classification",
    )
    torch.manual_seed(0)
    ASTForAudioClassification(config).eval().save_pretrained(path)
    ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length).save_pretrained(path)
