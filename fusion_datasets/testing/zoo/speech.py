"""A tiny random-weight multilingual Whisper, laid out like ``openai/whisper-large-v3``.

The token layout matches the real checkpoints (text tokens, ``<|endoftext|>``, ``<|startoftranscript|>``,
the 100 language tokens in Whisper's order, task and control tokens, then the 1501 timestamp tokens),
because the tokenizer and ``generate`` compute ids from it: a language id is ``<|startoftranscript|>``
+ 1 + its rank and every id above ``<|notimestamps|>`` is a timestamp. The encoder takes the real
30 s log-mel features (80 bins, 3000 frames), so the real feature extractor and the ASR pipeline's
chunking work unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ._bpe import train_byte_level_bpe, vocab_with_special_tokens

_MAX_TARGET_POSITIONS = 128
_TASKS = ("translate", "transcribe")
_CONTROL_TOKENS = ("<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>")


def _printable(token: str) -> bool:
    # Byte-level BPE spells the space "Ġ" and printable ASCII bytes as themselves.
    return all(char == "Ġ" or "!" <= char <= "~" for char in token)


def build_tiny_whisper(path: Path) -> None:
    """Save a tiny ``WhisperForConditionalGeneration`` and its ``WhisperProcessor`` into ``path``."""
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    languages = [f"<|{code}|>" for code in LANGUAGES]
    tasks = [f"<|{task}|>" for task in _TASKS]
    specials = ["<|endoftext|>", "<|startoftranscript|>", *languages, *tasks, *_CONTROL_TOKENS]
    timestamps = [f"<|{index * 0.02:.2f}|>" for index in range(1501)]
    vocab, merges = train_byte_level_bpe(vocab_size=400)
    vocab = vocab_with_special_tokens(vocab, after=[*specials, *timestamps])
    tokenizer = WhisperTokenizer(
        vocab=vocab,
        merges=merges,
        # As in the real tokenizer; without a pad token the ASR pipeline refuses to batch.
        pad_token="<|endoftext|>",
        extra_special_tokens=[AddedToken(token, special=True, normalized=False) for token in specials[1:]],
    )
    # Timestamps are plain added tokens, as in the real tokenizer: decode() filters them out itself.
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in timestamps])
    ids = tokenizer.convert_tokens_to_ids
    eos, start = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    # The real checkpoints forbid a leading space or an immediate end of text.
    begin_suppress_tokens = [ids("Ġ"), eos]

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=_MAX_TARGET_POSITIONS,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        decoder_start_token_id=start,
        suppress_tokens=[],
        begin_suppress_tokens=begin_suppress_tokens,
    )
    model = WhisperForConditionalGeneration(config).eval()
    # A random decoder writes whichever token its state aligns with best: often a timestamp when none was
    # asked for (generate then returns odd, over-long sequences) or a stray byte that decodes to "\ufffd".
    # Shrinking every row of the tied embedding but those of printable text and <|endoftext|> makes it
    # write readable text like a trained model; the logits processors still force control and timestamp
    # tokens where they are due.
    shrink = torch.ones(config.vocab_size, dtype=torch.bool)
    shrink[[index for token, index in vocab.items() if index < eos and _printable(token)] + [eos]] = False
    with torch.no_grad():
        model.get_input_embeddings().weight[shrink] *= 0.1
    model.generation_config = GenerationConfig(
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        decoder_start_token_id=start,
        max_length=_MAX_TARGET_POSITIONS,
        is_multilingual=True,
        lang_to_id={token: ids(token) for token in languages},
        task_to_id={task: ids(token) for task, token in zip(_TASKS, tasks)},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        begin_suppress_tokens=begin_suppress_tokens,
        suppress_tokens=[],
        # Cross-attention heads used for word-level timestamps (return_timestamps="word").
        alignment_heads=[[1, 0], [1, 2]],
    )
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
