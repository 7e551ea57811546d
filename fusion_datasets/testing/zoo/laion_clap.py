"""A tiny original LAION-CLAP checkpoint (``.pt``) with the local RoBERTa config and tokenizer it needs.

The audio encoder is the real HTSAT-tiny of ``laion_clap`` (random weights; the package fixes its
sizes); the text encoder keeps RoBERTa-base's width of 768, which laion_clap's projection requires,
but has one layer and a small local BPE vocabulary. The checkpoint is saved the way released ones
are, ``{"state_dict": {"module.<name>": tensor}}``, with the ``text_branch.embeddings.position_ids``
buffer that laion_clap's own loader expects (and deletes).

Layout: ``path/tiny-laion-clap.pt`` and ``path/text-encoder/`` (pass it as ``text_encoder``).
"""

from __future__ import annotations

from pathlib import Path

from ._bpe import train_byte_level_bpe, vocab_with_special_tokens

CHECKPOINT = "tiny-laion-clap.pt"
TEXT_ENCODER = "text-encoder"


def build_tiny_laion_clap(path: Path) -> None:
    """Save a tiny unfused HTSAT-tiny LAION-CLAP checkpoint and its text encoder folder into ``path``."""
    import torch
    from transformers import RobertaConfig, RobertaTokenizer

    from fusion_datasets.clap.laion import build_clap_module

    vocab, merges = train_byte_level_bpe(vocab_size=400)
    vocab = vocab_with_special_tokens(vocab, before=["<s>", "<pad>", "</s>", "<unk>"], after=["<mask>"])
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    text_encoder = Path(path) / TEXT_ENCODER
    config.save_pretrained(text_encoder)
    tokenizer.save_pretrained(text_encoder)

    torch.manual_seed(0)
    module = build_clap_module("HTSAT-tiny", False, str(text_encoder), "cpu")
    state = {f"module.{key}": value for key, value in module.model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
    torch.save({"epoch": 0, "state_dict": state}, Path(path) / CHECKPOINT)
