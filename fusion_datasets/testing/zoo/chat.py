"""A tiny random-weight chat LM shaped like Qwen2-Instruct: ChatML turns, left padding, eos ``<|im_end|>``.

Example:
    >>> from transformers import AutoTokenizer
    >>> AutoTokenizer.from_pretrained(tiny_zoo["chat-lm"]).eos_token  # built by build_tiny_chat_lm
    '<|im_end|>'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._bpe import qwen2_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, Qwen2ForCausalLM

# The Qwen2-Instruct template (ChatML with a default system turn). Content may also be an
# OpenAI-style list of text parts, which is what chat servers forward.
def chatml_template(part: str = "{{ part['text'] }}") -> str:
    """ChatML (Qwen's turns) with a default system turn, where each content ``part`` of a message renders as
    the Jinja snippet ``part`` (default: its text)."""
    return (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "{% endif %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}" + part + "{% endfor %}{% endif %}"
        "<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


CHATML_TEMPLATE = chatml_template()


def qwen2_text_config(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Keyword arguments of the tiny Qwen2 decoder that every zoo LM uses, sized to ``tokenizer``.

    The eos and pad ids set here are copied into the saved generation config, which is where
    ``generate()`` reads them from.
    """
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        # room for a 30 s Qwen2-Audio clip (750 audio tokens) plus its prompt
        "max_position_embeddings": 4096,
        "bos_token_id": None,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _tiny_chat_model(tokenizer: PreTrainedTokenizerBase) -> Qwen2ForCausalLM:
    """A random two-layer Qwen2 LM for ``tokenizer``, apart so that a trained variant can start from it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(**qwen2_text_config(tokenizer)))


def build_tiny_chat_lm(path: Path) -> None:
    """Write a random-weight chat LM and its tokenizer to ``path``, loadable with ``AutoModelForCausalLM``."""
    tokenizer = qwen2_tokenizer([], CHATML_TEMPLATE)
    _tiny_chat_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
