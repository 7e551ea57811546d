"""One in-process backend for the audio language models that transformers ships.

Every family goes through its own processor's chat template (the clip as an ``audio`` content part of
the conversation, passed as an array at the processor's sampling rate) and its auto model class, batched,
left-padded and greedy. What differs between families lives in :data:`FAMILIES`, one row each.

Example:
    >>> import torch
    >>> lm = load_audio_lm(str(tiny_zoo["qwen2-audio"]), device="cpu", dtype=torch.float32)  # a Qwen2-Audio, tiny
    >>> clip = np.zeros(2 * lm.sampling_rate, dtype=np.float32)
    >>> answers = lm.generate([clip], ["Describe the audio."], max_new_tokens=4)  # ['A dog barks while ...']
    >>> len(answers), type(answers[0])
    (1, <class 'str'>)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion_datasets.runtime import require

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioLMFamily:
    """How one model family takes a clip and gives text.

    ``max_seconds``: the longest audio the family takes; longer clips are cut to it here (the processor
    would pad or cut to it anyway, or the model has no positions beyond it). ``load_options``: extra
    ``from_pretrained`` arguments. ``writer``: in a model that speaks as well as writes, the part that
    writes (its ``generate`` gives text only); the speaking part is then not loaded.

    For training (``train-audio-lm``), paths in the loaded model (the writer): ``audio_encoder``,
    ``projector`` (what maps the encoder's output into the language model), ``language_model``, and
    ``expert_parameters`` (a mixture of experts' weights, held as parameters, not layers); ``audio_tokens``:
    the placeholders the processor puts where the audio goes; ``extra_files``: files of a checkpoint that its
    ``from_pretrained`` needs beside the weights and ``save_pretrained`` does not write (a merged copy gets them).
    """

    auto_class: str = "AutoModelForMultimodalLM"
    max_seconds: float = 30.0
    load_options: Mapping[str, Any] = field(default_factory=dict)
    writer: str | None = None
    audio_encoder: str = "model.audio_tower"
    projector: tuple[str, ...] = ("model.multi_modal_projector",)
    language_model: str = "model.language_model"
    expert_parameters: tuple[str, ...] = ()
    audio_tokens: tuple[str, ...] = ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
    extra_files: tuple[str, ...] = ()
    example: str = ""  # a Hub id, for the docs


FAMILIES: dict[str, AudioLMFamily] = {
    "qwen2_audio": AudioLMFamily(example="Qwen/Qwen2-Audio-7B-Instruct"),
    # the processor splits audio into 30 s windows, up to its max_audio_len (600 s)
    "audioflamingo3": AudioLMFamily("AutoModelForSeq2SeqLM", 600.0, audio_tokens=("<sound>",),
                                    example="nvidia/audio-flamingo-3-hf"),
    "musicflamingo": AudioLMFamily("AutoModelForSeq2SeqLM", 1200.0,
                                   audio_tokens=("<|sound_bos|>", "<sound>", "<|sound_eos|>"),
                                   example="nvidia/music-flamingo-2601-hf"),
    # the thinker writes; the talker would turn its answer into speech: not built
    "qwen2_5_omni": AudioLMFamily(max_seconds=300.0, load_options={"enable_audio_output": False},
                                  writer="thinker", projector=("model.audio_tower.proj",),
                                  extra_files=("spk_dict.pt",),  # the talker's voices, required at load
                                  example="Qwen/Qwen2.5-Omni-7B"),
    "qwen3_omni_moe": AudioLMFamily(max_seconds=300.0, load_options={"enable_audio_output": False},
                                    writer="thinker",
                                    projector=("model.audio_tower.proj1", "model.audio_tower.proj2"),
                                    expert_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
                                    example="Qwen/Qwen3-Omni-30B-A3B-Instruct"),
    # the conformer takes any length; 600 s keeps the prompt to about 10k audio tokens
    "granite_speech": AudioLMFamily(max_seconds=600.0, audio_encoder="model.encoder", projector=("model.projector",),
                                    audio_tokens=("<|audio|>",), example="ibm-granite/granite-speech-3.3-2b"),
}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(FAMILIES)


def family_of(model_type: str, model: str) -> AudioLMFamily:
    """The family row of ``model_type``, or a ValueError naming it and the supported ones."""
    if model_type not in FAMILIES:
        raise ValueError(f"cannot run {model!r} as an audio language model (model_type {model_type!r}); "
                         f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return FAMILIES[model_type]


def processor_rate(processor: Any) -> int:
    """The rate an audio LM's processor takes audio at (its ``feature_extractor``'s or ``audio_processor``'s)."""
    audio = getattr(processor, "feature_extractor", None) or processor.audio_processor
    return int(audio.sampling_rate)


@dataclass
class AudioLM:
    """A loaded audio LM: ``generate`` answers one prompt per clip."""

    model: Any
    processor: Any
    family: AudioLMFamily
    device: str
    dtype: Any

    @property
    def sampling_rate(self) -> int:
        return processor_rate(self.processor)

    def generate(self, clips: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy answers to ``prompts`` (one per clip) about 1-D ``clips`` at :attr:`sampling_rate`."""
        import torch

        limit = int(self.family.max_seconds * self.sampling_rate)
        conversations = [[{"role": "user", "content": [
            {"type": "audio", "audio": np.asarray(clip[:limit], dtype=np.float32)},
            {"type": "text", "text": prompt},
        ]}] for clip, prompt in zip(clips, prompts)]
        inputs = self.processor.apply_chat_template(
            conversations, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt",
            processor_kwargs={"text_kwargs": {"padding": True}, "sampling_rate": self.sampling_rate})
        inputs = inputs.to(self.device, self.dtype)  # casts only the floating inputs (features), not the ids
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]  # generate returns prompt and answer
        return [answer.strip() for answer in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


ADAPTER_CONFIG = "adapter_config.json"


def adapter_base(model: str) -> str | None:
    """The base model of ``model`` when it is a LoRA adapter's folder (``train-audio-lm``'s output), else None."""
    config = Path(model) / ADAPTER_CONFIG
    return json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"] if config.is_file() else None


def load_family_model(model: str, family: AudioLMFamily, dtype: Any, **pretrained: Any) -> Any:
    """``model``'s weights by its family's auto class, the talker of a speaking model left out."""
    import transformers

    auto_class = getattr(transformers, family.auto_class)
    return auto_class.from_pretrained(model, dtype=dtype, **family.load_options, **pretrained)


def load_audio_lm(model: str, device: str, dtype: Any, max_seconds: float | None = None,
                  **pretrained: Any) -> AudioLM:
    """Load ``model`` (Hub id or folder) with its family's auto class; ``pretrained``: ``from_pretrained``
    options. A LoRA adapter's folder loads its base model with the adapter merged in, and its own processor.
    Warns when ``max_seconds`` (what the caller keeps of a clip) exceeds what the family takes."""
    import transformers

    base = adapter_base(model)
    weights = base or model
    model_type = transformers.AutoConfig.from_pretrained(weights, **pretrained).model_type
    family = family_of(model_type, weights)
    if max_seconds is not None and max_seconds > family.max_seconds:
        logger.warning("max_seconds=%s: %s (%s) takes at most %s s of each clip", max_seconds, model,
                       model_type, family.max_seconds)
    processor = transformers.AutoProcessor.from_pretrained(model, **pretrained)
    # generate() continues every row from its last position, so pads must come first
    processor.tokenizer.padding_side = "left"
    loaded = load_family_model(weights, family, dtype, **pretrained)
    if family.writer is not None:
        loaded = getattr(loaded, family.writer)
    if base is not None:
        peft = require("peft", "train")
        loaded = peft.PeftModel.from_pretrained(loaded, model).merge_and_unload()
    return AudioLM(loaded.to(device).eval(), processor, family, device, dtype)
