"""Contrastive fine-tuning of transformers CLAP models on caption datasets (``train-clap``)."""

from fusion_datasets.train.clap import (
    PRESETS,
    TrainClapConfig,
    TrainClapResult,
    load_train_config,
    train_clap,
)

__all__ = ["PRESETS", "TrainClapConfig", "TrainClapResult", "load_train_config", "train_clap"]
