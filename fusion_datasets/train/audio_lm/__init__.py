"""Instruction-tuning of audio LMs on caption and QA data (``train-audio-lm``): LoRA with transformers Trainer."""

from fusion_datasets.train.audio_lm.config import PRESETS, TrainAudioLMConfig, load_config
from fusion_datasets.train.audio_lm.training import train_audio_lm

__all__ = ["PRESETS", "TrainAudioLMConfig", "load_config", "train_audio_lm"]
