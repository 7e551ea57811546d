"""Tiny random-weight audio LMs of more families, for the in-process backend (``experts/audio_lm.py``).

Each is built like its Hub checkpoint: the family's processor (its real feature extractor and a tokenizer
on the zoo's local BPE, with the family's audio placeholders and a chat template that puts them where the
audio content part is) and a small config of the family's model class.

Example:
    >>> from transformers import AutoProcessor
    >>> type(AutoProcessor.from_pretrained(tiny_zoo["audioflamingo3"])).__name__  # built by build_tiny_audioflamingo3
    'AudioFlamingo3Processor'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._bpe import qwen2_tokenizer
from .chat import chatml_template, qwen2_text_config

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _chatml_template(audio: str) -> str:
    """ChatML (Qwen's turns) where each audio content part becomes ``audio``."""
    return chatml_template("{% if part['type'] == 'audio' %}" + audio
                           + "{% elif 'text' in part %}{{ part['text'] }}{% endif %}")


def _whisper_encoder(**extra: object) -> dict[str, object]:
    """A two-layer Whisper-style encoder over 128 mel bins whose positions cover a 30 s window."""
    return {"num_mel_bins": 128, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
            "d_model": 32, "max_source_positions": 1500, **extra}


def build_tiny_audioflamingo3(path: Path) -> None:
    """Write a random-weight Audio Flamingo 3 and its processor (``<sound>`` per 40 ms) to ``path``."""
    import torch
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3ForConditionalGeneration,
        AudioFlamingo3Processor,
        WhisperFeatureExtractor,
    )

    template = _chatml_template("<sound>")
    tokenizer = qwen2_tokenizer(["<sound>"], template)
    config = AudioFlamingo3Config(
        audio_config={"model_type": "audioflamingo3_encoder", **_whisper_encoder()},
        text_config={"model_type": "qwen2", **qwen2_text_config(tokenizer)},
        audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"),
    )
    torch.manual_seed(0)
    AudioFlamingo3ForConditionalGeneration(config).save_pretrained(path)
    extractor = WhisperFeatureExtractor(feature_size=128, return_attention_mask=True)
    AudioFlamingo3Processor(extractor, tokenizer, chat_template=template).save_pretrained(path)


# The Qwen omni processors read their placeholders from the tokenizer, by these names.
_OMNI_TOKENS = {
    "audio_bos_token": "<|audio_bos|>", "audio_token": "<|AUDIO|>", "audio_eos_token": "<|audio_eos|>",
    "vision_bos_token": "<|vision_bos|>", "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>",
    "vision_eos_token": "<|vision_eos|>",
}
_OMNI_TEMPLATE = _chatml_template("<|audio_bos|><|AUDIO|><|audio_eos|>")


def _omni_parts() -> tuple[PreTrainedTokenizerBase, dict[str, Any]]:
    """The tokenizer of a tiny Qwen omni model and its thinker config's token ids and text part (less rope)."""
    from transformers import Qwen2Tokenizer

    from ._bpe import train_byte_level_bpe

    vocab, merges = train_byte_level_bpe()
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               padding_side="left", chat_template=_OMNI_TEMPLATE,
                               extra_special_tokens={"im_start_token": "<|im_start|>", **_OMNI_TOKENS})
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in _OMNI_TOKENS.items()}
    return tokenizer, {
        "text_config": qwen2_text_config(tokenizer),
        "audio_start_token_id": ids["audio_bos_token"], "audio_end_token_id": ids["audio_eos_token"],
        "vision_start_token_id": ids["vision_bos_token"], "vision_end_token_id": ids["vision_eos_token"],
        "user_token_id": tokenizer.convert_tokens_to_ids("user"),
        "audio_token_id": ids["audio_token"], "image_token_id": ids["image_token"],
        "video_token_id": ids["video_token"],
    }


def _mrope(text: dict[str, Any]) -> dict[str, Any]:
    """Multimodal rope over (time, height, width) sections of each head's rotary half."""
    rotary_half = text["hidden_size"] // text["num_attention_heads"] // 2
    return {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, rotary_half - 3]}


def _save_omni_processor(processor_class: type, tokenizer: PreTrainedTokenizerBase, path: Path,
                         patch_size: int) -> None:
    """The real checkpoints' 300 s audio window, and image and video processors the template never calls."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor, WhisperFeatureExtractor

    from .vision import _PIXELS

    processor_class(
        image_processor=Qwen2VLImageProcessor(size=_PIXELS, patch_size=patch_size),
        video_processor=Qwen2VLVideoProcessor(size=_PIXELS, patch_size=patch_size, cap_pixels_per_frame=True),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, chunk_length=300, return_attention_mask=True),
        tokenizer=tokenizer,
        chat_template=_OMNI_TEMPLATE,
    ).save_pretrained(path)


def build_tiny_qwen2_5_omni(path: Path) -> None:
    """Write a random-weight Qwen2.5-Omni without its talker (``enable_audio_output=False``) to ``path``.

    ``spk_dict.pt`` (the talker's voices, which ``from_pretrained`` requires) holds one empty voice.
    """
    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniProcessor

    tokenizer, thinker = _omni_parts()
    text = thinker["text_config"]
    thinker.update(
        audio_config={**_whisper_encoder(), "output_dim": text["hidden_size"], "n_window": 100},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": text["hidden_size"], "fullatt_block_indexes": [0]},
        text_config={**text, "rope_parameters": _mrope(text)},
        # Qwen2.5-Omni names these three "_index"
        **{name.replace("_id", "_index"): thinker.pop(name) for name in ("audio_token_id", "image_token_id",
                                                                          "video_token_id")},
    )
    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False))
    model.save_pretrained(path)
    torch.save({"Chelsie": {}}, path / "spk_dict.pt")
    _save_omni_processor(Qwen2_5OmniProcessor, tokenizer, path, patch_size=14)


def build_tiny_qwen3_omni(path: Path) -> None:
    """Write a random-weight Qwen3-Omni (a mixture-of-experts thinker) without its talker to ``path``."""
    import torch
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration, Qwen3OmniMoeProcessor

    tokenizer, thinker = _omni_parts()
    text = thinker["text_config"]
    for name in ("audio_end_token_id", "vision_end_token_id"):
        thinker.pop(name)
    thinker.update(
        audio_config={**_whisper_encoder(), "output_dim": text["hidden_size"], "downsample_hidden_size": 16},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 16,
                       "out_hidden_size": text["hidden_size"], "num_position_embeddings": 64,
                       "deepstack_visual_indexes": [0]},
        text_config={**text, "rope_parameters": _mrope(text), "num_experts": 4, "num_experts_per_tok": 2,
                     "moe_intermediate_size": 32},
    )
    torch.manual_seed(0)
    model = Qwen3OmniMoeForConditionalGeneration(Qwen3OmniMoeConfig(thinker_config=thinker, enable_audio_output=False))
    model.save_pretrained(path)
    _save_omni_processor(Qwen3OmniMoeProcessor, tokenizer, path, patch_size=16)


# Granite's turns: <|start_of_role|>ROLE<|end_of_role|>TEXT<|end_of_text|>, the audio as <|audio|>.
GRANITE_SPEECH_TEMPLATE = (
    "{% for message in messages %}"
    "<|start_of_role|>{{ message['role'] }}<|end_of_role|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<|audio|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|end_of_text|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_of_role|>assistant<|end_of_role|>{% endif %}"
)


def build_tiny_granite_speech(path: Path) -> None:
    """Write a random-weight Granite Speech (conformer encoder, Q-Former projector, Granite LM) to ``path``.

    No LoRA adapter (``has_lora_adapter=False``), so loading needs no ``peft``.
    """
    import torch
    from transformers import (
        GPT2Tokenizer,
        GraniteSpeechConfig,
        GraniteSpeechFeatureExtractor,
        GraniteSpeechForConditionalGeneration,
        GraniteSpeechProcessor,
    )

    from ._bpe import train_byte_level_bpe

    vocab, merges = train_byte_level_bpe()
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges, bos_token="<|end_of_text|>", eos_token="<|end_of_text|>",
                              unk_token="<|end_of_text|>", pad_token="<|pad|>", padding_side="left",
                              extra_special_tokens=["<|start_of_role|>", "<|end_of_role|>", "<|audio|>"],
                              chat_template=GRANITE_SPEECH_TEMPLATE)
    text = {"model_type": "granite", "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 4096, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
            # tied, a random LM echoes its last input token (a special token here) and answers ""
            "tie_word_embeddings": False}
    config = GraniteSpeechConfig(
        text_config=text,
        encoder_config={"input_dim": 160, "num_layers": 2, "hidden_dim": 32, "num_heads": 2, "dim_head": 16,
                        "output_dim": 8, "context_size": 200},
        projector_config={"model_type": "blip_2_qformer", "hidden_size": 32, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "intermediate_size": 64, "encoder_hidden_size": 32,
                          "cross_attention_frequency": 1},
        audio_token_index=tokenizer.convert_tokens_to_ids("<|audio|>"),
        has_lora_adapter=False,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    GraniteSpeechForConditionalGeneration(config).save_pretrained(path)
    GraniteSpeechProcessor(GraniteSpeechFeatureExtractor(), tokenizer,
                           chat_template=GRANITE_SPEECH_TEMPLATE).save_pretrained(path)


def build_tiny_musicflamingo(path: Path) -> None:
    """Write a random-weight Music Flamingo (Audio Flamingo 3 with rotary time embeddings and
    ``<|sound_bos|>``/``<|sound_eos|>`` around its ``<sound>`` tokens) to ``path``."""
    import torch
    from transformers import (
        MusicFlamingoConfig,
        MusicFlamingoForConditionalGeneration,
        MusicFlamingoProcessor,
        WhisperFeatureExtractor,
    )

    tokens = ["<|sound_bos|>", "<sound>", "<|sound_eos|>"]
    template = _chatml_template("".join(tokens))
    tokenizer = qwen2_tokenizer(tokens, template)
    bos_id, sound_id, eos_id = tokenizer.convert_tokens_to_ids(tokens)
    config = MusicFlamingoConfig(
        audio_config={"model_type": "audioflamingo3_encoder", **_whisper_encoder()},
        text_config={"model_type": "qwen2", **qwen2_text_config(tokenizer)},
        audio_token_id=sound_id, audio_bos_token_id=bos_id, audio_eos_token_id=eos_id,
    )
    torch.manual_seed(0)
    MusicFlamingoForConditionalGeneration(config).save_pretrained(path)
    extractor = WhisperFeatureExtractor(feature_size=128, return_attention_mask=True)
    MusicFlamingoProcessor(extractor, tokenizer, chat_template=template).save_pretrained(path)
