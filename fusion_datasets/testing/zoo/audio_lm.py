"""A tiny random-weight Qwen2-Audio: a two-layer Whisper-style encoder in front of the zoo's tiny decoder.

The processor is the real ``Qwen2AudioProcessor`` (128-bin Whisper features, clips padded to 30 s)
with the Qwen2-Audio-7B-Instruct chat template, so ``<|AUDIO|>`` expands to one token per 40 ms of audio.

Example:
    >>> from transformers import AutoProcessor
    >>> processor = AutoProcessor.from_pretrained(tiny_zoo["qwen2-audio"])  # built by build_tiny_qwen2_audio
    >>> type(processor).__name__, processor.feature_extractor.feature_size
    ('Qwen2AudioProcessor', 128)
"""

from __future__ import annotations

from pathlib import Path

from ._bpe import qwen2_tokenizer
from .chat import qwen2_text_config

# The chat template of Qwen/Qwen2-Audio-7B-Instruct: each audio item becomes "Audio N: " + placeholder.
QWEN2_AUDIO_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content or content['type'] == 'audio' %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen2_audio(path: Path) -> None:
    """Write a random-weight Qwen2-Audio and its processor to ``path``.

    Loads with ``AutoProcessor`` and ``AutoModelForMultimodalLM`` (or ``AutoModelForSeq2SeqLM``).
    """
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tokenizer = qwen2_tokenizer(["<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"], QWEN2_AUDIO_TEMPLATE)
    config = Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            "num_mel_bins": 128,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            # the encoder's position table must cover 30 s of features after its stride-2 conv
            "max_source_positions": 1500,
        },
        text_config={"model_type": "qwen2", **qwen2_text_config(tokenizer)},
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(0)
    Qwen2AudioForConditionalGeneration(config).save_pretrained(path)
    processor = Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=128),
        tokenizer=tokenizer,
        chat_template=QWEN2_AUDIO_TEMPLATE,
    )
    processor.save_pretrained(path)
