"""The ``train-audio-lm`` config: three presets (the recipe's parts) and every field overridable by ``--set``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from fusion_datasets.config import ConfigError, apply_overrides, from_mapping, to_mapping

# the language model's attention and MLP projections, by path: the audio encoders name layers q/k/v_proj too
LANGUAGE_MODEL_LAYERS = r"self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj"
QUERY_VALUE_LAYERS = r"self_attn\.(q|v)_proj"

PRESETS: dict[str, dict[str, Any]] = {
    # audio encoder frozen, LoRA on the language model, projector trained in full
    "default": {},
    # FusionAudio's release (GAMA's recipe): LoRA r8/alpha16 on q and v, the audio encoder and projector
    # trained, the prompt in the loss, lr 1e-4, 2 epochs
    "fusionaudio": {"lora_r": 8, "lora_alpha": 16, "lora_layers": QUERY_VALUE_LAYERS, "train_audio_encoder": True,
                    "train_on_inputs": True, "learning_rate": 1e-4, "epochs": 2},
    # LoRA on the language model alone
    "frozen-projector": {"train_projector": False},
}


@dataclass(frozen=True)
class TrainAudioLMConfig:
    """How ``train_audio_lm`` fine-tunes an audio LM on caption and QA data.

    ``data``: sources, each ``SOURCE`` or ``SOURCE@WEIGHT`` (a run output or Hub dataset in its layout, or a
    FusionAudio release JSON); a weight scales how many of its rows an epoch takes (0.5: half, drawn once;
    2: each twice). ``eval_fraction`` of the clips (all the rows of a clip together) are held out.
    ``lora_layers``: a regular expression of layer paths inside the language model. ``max_seconds``: clips
    are cut to it and to the family's window, as the experts cut them.
    """

    model: str = ""
    data: tuple[str, ...] = ()
    output: str = ""
    preset: str = "default"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_layers: str = LANGUAGE_MODEL_LAYERS
    train_audio_encoder: bool = False
    train_projector: bool = True
    train_lm_head: bool = False
    train_on_inputs: bool = False
    learning_rate: float = 2e-4
    epochs: float = 3.0
    max_steps: int | None = None
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 4
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    activation_checkpointing: bool = False
    eval_fraction: float = 0.02
    save_steps: int = 500
    keep_checkpoints: int = 2
    logging_steps: int = 10
    seed: int = 0
    num_workers: int = 2
    max_seconds: float = 30.0
    merge: bool = False
    eval: tuple[str, ...] = ()
    eval_max_new_tokens: int = 256
    revision: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model: give the audio LM to start from (a Hub id or folder)")
        if not self.data:
            raise ConfigError("data: give at least one training source (--data OUT_OR_HUB_ID)")
        if not self.output:
            raise ConfigError("output: give the folder the adapter and checkpoints go to (--output DIR)")
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: {self.preset!r} is not allowed; choose one of {', '.join(map(repr, PRESETS))}")
        for name in ("lora_r", "lora_alpha", "per_device_batch_size", "gradient_accumulation_steps", "save_steps",
                     "keep_checkpoints", "logging_steps", "max_steps", "eval_max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}: must be >= 1, got {value}")
        if self.learning_rate <= 0 or self.epochs <= 0 or self.max_seconds <= 0:
            raise ConfigError("learning_rate, epochs and max_seconds must be > 0")
        if not 0 <= self.eval_fraction < 1 or not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("eval_fraction, lora_dropout and warmup_ratio must be in [0, 1)")
        for source in self.data:
            parse_source(source)

    def training_settings(self) -> dict[str, Any]:
        """The fields that decide the trained weights (not where they go): a resumed run must have the same."""
        where = ("output", "merge", "num_workers", "eval", "eval_max_new_tokens")
        return {key: value for key, value in to_mapping(self).items() if key not in where}


def parse_source(source: str) -> tuple[str, float]:
    """``SOURCE@WEIGHT`` as ``(SOURCE, WEIGHT)``; without a weight, 1.

    Example:
        >>> parse_source("runs/out@0.5"), parse_source("org/name")
        (('runs/out', 0.5), ('org/name', 1.0))
    """
    name, sep, weight = source.rpartition("@")
    if not sep:
        return source, 1.0
    try:
        value = float(weight)
    except ValueError:
        return source, 1.0
    if not name or value <= 0:
        raise ConfigError(f"data: {source!r}: a source's weight must be a number > 0 after its name (SOURCE@0.5)")
    return name, value


def load_config(model_or_config: str, overrides: Sequence[str] = (), **fields: Any) -> TrainAudioLMConfig:
    """A config from ``model_or_config`` (a YAML file of fields, or the model), its preset, ``fields`` (the
    command's options, where given), then ``key=value`` overrides.

    Example:
        >>> load_config("Qwen/Qwen2-Audio-7B-Instruct", ["epochs=1"], data=["runs/out"], output="lm",
        ...             preset="fusionaudio").learning_rate
        0.0001
    """
    path = Path(model_or_config)
    given: Mapping[str, Any]
    if path.suffix in (".yaml", ".yml") and path.is_file():
        given = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(given, Mapping):
            raise ConfigError(f"{path}: expected a mapping of config fields")
    else:
        given = {"model": model_or_config}
    options = {key: value for key, value in fields.items() if value not in (None, [], ())}
    explicit = apply_overrides({**given, **options}, overrides)
    preset = explicit.get("preset", "default")
    if preset not in PRESETS:
        raise ConfigError(f"preset: {preset!r} is not allowed; choose one of {', '.join(map(repr, PRESETS))}")
    return from_mapping(TrainAudioLMConfig, {**PRESETS[preset], **explicit})
