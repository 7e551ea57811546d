"""The model to fine-tune: a family's audio LM with LoRA on its language model and the parts a preset trains.

LoRA layers are matched by their path inside the language model (``family.language_model``): the
Whisper-style audio encoders name their layers ``q_proj``/``k_proj``/``v_proj`` too. The projector, the audio
encoder and the output layer, where trained, are trained in full (peft's ``modules_to_save``), and saved with
the adapter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fusion_datasets.experts.audio_lm import AudioLMFamily, family_of, load_family_model, processor_rate
from fusion_datasets.runtime import require
from fusion_datasets.train.audio_lm.config import TrainAudioLMConfig


@dataclass
class LoadedBase:
    """The base model as loaded (``whole``) and the part that writes (``writer``: the model itself, or the
    thinker of a model that also speaks), with its processor and family."""

    whole: Any
    writer: Any
    processor: Any
    family: AudioLMFamily

    @property
    def sampling_rate(self) -> int:
        return processor_rate(self.processor)


def load_base(config: TrainAudioLMConfig, dtype: Any) -> LoadedBase:
    """``config.model`` with its processor, by its family (``experts/audio_lm.py``)."""
    import transformers

    pretrained = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    model_type = transformers.AutoConfig.from_pretrained(config.model, **pretrained).model_type
    family = family_of(model_type, config.model)
    processor = transformers.AutoProcessor.from_pretrained(config.model, **pretrained)
    whole = load_family_model(config.model, family, dtype, **pretrained)
    writer = getattr(whole, family.writer) if family.writer else whole
    return LoadedBase(whole, writer, processor, family)


def lora_config(config: TrainAudioLMConfig, family: AudioLMFamily) -> Any:
    """peft's LoRA config of ``config``'s preset for ``family``."""
    peft = require("peft", "train")
    trained = [family.audio_encoder] if config.train_audio_encoder else []
    if config.train_projector:  # a projector inside a trained encoder is trained with it
        trained += [part for part in family.projector
                    if not (config.train_audio_encoder and part.startswith(f"{family.audio_encoder}."))]
    if config.train_lm_head:
        trained.append("lm_head")
    return peft.LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=rf"{re.escape(family.language_model)}\.layers\.\d+\.({config.lora_layers})",
        modules_to_save=trained or None, task_type=None,
    )


def with_adapter(base: LoadedBase, config: TrainAudioLMConfig) -> Any:
    """The writer wrapped with a fresh LoRA adapter (and its fully trained parts), ready for ``Trainer``."""
    peft = require("peft", "train")
    model = peft.get_peft_model(base.writer, lora_config(config, base.family))
    model.peft_config["default"].base_model_name_or_path = config.model
    if config.activation_checkpointing:
        model.enable_input_require_grads()  # the frozen embeddings' output must carry gradients through
    return model
