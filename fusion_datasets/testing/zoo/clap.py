"""A tiny random-weight CLAP (HTSAT audio, RoBERTa text), shaped like ``laion/clap-htsat-unfused``.

The audio encoder keeps the real input geometry (48 kHz, 64 mel bins, 10 s, a 256x256 spectrogram image in
4x4 patches through 4 Swin stages with 8x8 windows) so the real ``ClapFeatureExtractor`` feeds it; only the
widths and depths shrink. The model is unfused, so the feature extractor is saved with
``truncation="rand_trunc"``: its default, ``"fusion"``, makes 4-channel input that crashes an unfused model.

``clap-trainable`` is the same model for training tests, without dropout and with twice the initial weight
scale (see :func:`build_trainable_clap`).
"""

from __future__ import annotations

from pathlib import Path

from ._bpe import train_byte_level_bpe, vocab_with_special_tokens

_PROJECTION_DIM = 32
# The audio width doubles at each of the 4 Swin stages: 16, 32, 64, 128.
_AUDIO_PATCH_WIDTH = 16
_AUDIO_STAGES = 4
_NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def build_tiny_clap(path: Path) -> None:
    """Save a tiny unfused ``ClapModel`` and its ``ClapProcessor`` into ``path``."""
    _save_tiny_clap(path)


def build_trainable_clap(path: Path) -> None:
    """Save the tiny CLAP for training tests: no dropout, ``initializer_factor`` 2.

    At the default init the tiny text tower gives every caption almost the same embedding (cosine ~0.9996)
    and dropout's noise swamps what differs, so contrastive training sits at ``ln(batch)`` for a random
    number of steps, often the whole of a short run. This one learns a 4-pitch tone task in ~50 steps of batch 8.
    """
    factor = {"initializer_factor": 2.0}
    _save_tiny_clap(
        path,
        text={**_NO_DROPOUT, **factor},
        audio={**_NO_DROPOUT, "drop_path_rate": 0.0, **factor},
        model=factor,
    )


def _save_tiny_clap(
    path: Path,
    text: dict[str, float] | None = None,
    audio: dict[str, float] | None = None,
    model: dict[str, float] | None = None,
) -> None:
    """The tiny CLAP with ``text``, ``audio`` and ``model`` added to its text, audio and top-level configs."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    vocab, merges = train_byte_level_bpe(vocab_size=400)
    # RoBERTa's layout: <s> 0, <pad> 1, </s> 2, <unk> 3, ..., <mask> last (the text encoder's position
    # ids are counted from the padding id, so it must stay 1).
    vocab = vocab_with_special_tokens(vocab, before=["<s>", "<pad>", "</s>", "<unk>"], after=["<mask>"])
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)

    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 514,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "projection_dim": _PROJECTION_DIM,
        **(text or {}),
    }
    audio_config = {
        "enable_fusion": False,
        "patch_embeds_hidden_size": _AUDIO_PATCH_WIDTH,
        "hidden_size": _AUDIO_PATCH_WIDTH * 2 ** (_AUDIO_STAGES - 1),
        "depths": [1] * _AUDIO_STAGES,
        "num_attention_heads": [1, 2, 4, 8],
        "projection_dim": _PROJECTION_DIM,
        **(audio or {}),
    }
    config = ClapConfig(
        text_config=text_config, audio_config=audio_config, projection_dim=_PROJECTION_DIM, **(model or {})
    )
    torch.manual_seed(0)
    ClapModel(config).eval().save_pretrained(path)
    feature_extractor = ClapFeatureExtractor(truncation="rand_trunc")
    ClapProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(path)
