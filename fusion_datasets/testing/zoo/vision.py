"""A tiny random-weight Qwen2.5-VL: a two-block vision tower in front of the zoo's tiny decoder.

Frames and images are resized to at most 56 * 56 pixels (16 patches of 14x14, merged 2x2 into at
most 4 tokens per pair of frames), so a few-frame video costs a handful of tokens.

Example:
    >>> from transformers import AutoProcessor
    >>> processor = AutoProcessor.from_pretrained(tiny_zoo["qwen2.5-vl"])  # built by build_tiny_qwen2_5_vl
    >>> processor.image_processor.size["longest_edge"]  # pixels: 56 * 56
    3136
"""

from __future__ import annotations

from pathlib import Path

from ._bpe import qwen2_tokenizer
from .chat import qwen2_text_config

# The chat template of Qwen/Qwen2.5-VL-7B-Instruct (without its optional "Picture N:" labels).
QWEN2_5_VL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Resize bounds in pixels: one merged 28x28 patch at least, a 2x2 grid of them at most.
_PIXELS = {"shortest_edge": 28 * 28, "longest_edge": 56 * 56}


def build_tiny_qwen2_5_vl(path: Path) -> None:
    """Write a random-weight Qwen2.5-VL and its processor (images and videos) to ``path``.

    Loads with ``AutoProcessor`` and ``AutoModelForImageTextToText``.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokens = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer = qwen2_tokenizer(tokens, QWEN2_5_VL_TEMPLATE)
    start_id, end_id, image_id, video_id = tokenizer.convert_tokens_to_ids(tokens)
    text_config = qwen2_text_config(tokenizer)
    # Multimodal rope splits each head's rotary half into (time, height, width) sections; like the
    # real [16, 24, 24] for head_dim 128, a quarter goes to time and the rest is split evenly.
    rotary_half = text_config["hidden_size"] // text_config["num_attention_heads"] // 2
    time_section = rotary_half // 4
    height_section = (rotary_half - time_section) // 2
    mrope_section = [time_section, height_section, rotary_half - time_section - height_section]
    config = Qwen2_5_VLConfig(
        text_config={
            **text_config,
            "rope_parameters": {"rope_type": "default", "mrope_section": mrope_section},
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": text_config["hidden_size"],
            "fullatt_block_indexes": [1],
        },
        image_token_id=image_id,
        video_token_id=video_id,
        vision_start_token_id=start_id,
        vision_end_token_id=end_id,
    )
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=_PIXELS),
        # cap_pixels_per_frame=True is the upcoming default; setting it silences the deprecation warning
        video_processor=Qwen2VLVideoProcessor(size=_PIXELS, cap_pixels_per_frame=True),
        tokenizer=tokenizer,
        chat_template=QWEN2_5_VL_TEMPLATE,
    )
    processor.save_pretrained(path)
