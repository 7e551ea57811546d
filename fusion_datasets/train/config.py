"""The ``train-clap`` config: the paper's recipe as defaults, a ``finetune`` preset, ``--set`` overrides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fusion_datasets.clap.embed import DEFAULT_CLAP
from fusion_datasets.config import ConfigError, apply_overrides, from_mapping

# The paper pretrains on its captions with lr 5e-5, batch 196, 15 epochs, then fine-tunes on AudioCaps
# with lr 1e-5 for 20 epochs.
PRESETS: dict[str, dict[str, Any]] = {
    "pretrain": {},
    "finetune": {"learning_rate": 1e-5, "epochs": 20},
}


@dataclass(frozen=True)
class TrainClapConfig:
    """How ``train_clap`` trains: model, data, recipe, checkpoints and evaluation.

    ``batch_size`` is the global batch: ``per_device_batch_size x gradient_accumulation_steps x
    processes``; give one of the two others (or neither: no accumulation) and the other is derived.
    Weight decay (open_clip's 0.2; the paper does not give it) spares biases, norms and logit scales.
    ``max_steps`` stops early (the schedule still spans ``epochs``): a later run resumes.
    """

    model: str = DEFAULT_CLAP
    train: tuple[str, ...] = ()
    eval: str = ""
    output: str = "clap-finetuned"
    learning_rate: float = 5e-5
    batch_size: int = 196
    per_device_batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    epochs: int = 15
    weight_decay: float = 0.2
    warmup_ratio: float = 0.05
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    save_every_steps: int = 1000
    keep_checkpoints: int = 2
    max_steps: int | None = None
    seed: int = 0
    num_workers: int = 4
    audio_column: str = "audio"
    train_split: str = "train"
    eval_split: str = "test"
    eval_batch_size: int = 32
    eval_resamples: int = 1000
    eval_before_training: bool = True
    push_to_hub: str | None = None
    private: bool = False

    def __post_init__(self) -> None:
        if not self.train:
            raise ConfigError("train: give at least one training dataset (--train DATASET[:config])")
        if not self.eval:
            raise ConfigError("eval: give a retrieval dataset to evaluate on (--eval DATASET)")
        positive = (
            "batch_size",
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "epochs",
            "save_every_steps",
            "keep_checkpoints",
            "max_steps",
            "eval_batch_size",
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}: must be >= 1, got {value}")
        for name in ("num_workers", "eval_resamples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError(
                f"need learning_rate > 0, weight_decay >= 0 and 0 <= warmup_ratio < 1, got "
                f"{self.learning_rate}, {self.weight_decay} and {self.warmup_ratio}"
            )

    def batch_layout(self, num_processes: int) -> tuple[int, int]:
        """``(per_device_batch_size, gradient_accumulation_steps)`` for ``batch_size`` on N processes.

        Example:
            >>> TrainClapConfig(train=("d",), eval="e", per_device_batch_size=49).batch_layout(2)
            (49, 2)
        """
        per_device, accumulation = self.per_device_batch_size, self.gradient_accumulation_steps
        if per_device is None:
            accumulation = accumulation or 1
            per_device = self.batch_size // (accumulation * num_processes)
        elif accumulation is None:
            accumulation = self.batch_size // (per_device * num_processes)
        if per_device < 1 or accumulation < 1 or per_device * accumulation * num_processes != self.batch_size:
            raise ConfigError(
                f"batch_size {self.batch_size} is not per_device_batch_size x gradient_accumulation_steps x "
                f"processes ({self.per_device_batch_size or '?'} x "
                f"{self.gradient_accumulation_steps or '?'} x "
                f"{num_processes}): set per_device_batch_size or gradient_accumulation_steps so that it is"
            )
        return per_device, accumulation


def load_train_config(
    preset: str = "pretrain", overrides: Sequence[str] = (), **fields: Any
) -> TrainClapConfig:
    """A config from a preset (``pretrain``: the paper's, ``finetune``), fields, then ``key=value`` overrides.

    Example:
        >>> load_train_config("finetune", ["epochs=3"], train=["runs/out"], eval="data/clotho").learning_rate
        1e-05
    """
    if preset not in PRESETS:
        raise ConfigError(f"preset: {preset!r} is not allowed; choose one of {', '.join(map(repr, PRESETS))}")
    data = {**PRESETS[preset], **{key: value for key, value in fields.items() if value is not None}}
    return from_mapping(TrainClapConfig, apply_overrides(data, overrides))
