"""A small byte-level BPE trained locally, the base of every tiny tokenizer in the zoo."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_CORPUS = """
Describe the audio in detail, but there is no need for association or speculation.
A dog barks twice while a car passes by on a wet road. Music plays in the background.
A man speaks over a crowd, followed by applause and cheering. Birds chirp and wind blows.
Rain falls on a metal roof; thunder rumbles in the distance. An engine idles, then revs.
A piano melody with drums at a moderate tempo; the mood is calm and warm. Guitar, bass, violin.
The video shows a street at night. 00:00 00:05 00:10 A person walks across the frame.
Speech(100%) Music(87%) Vehicle(45%) Potential ambiguities Audio caption question answer
What sound is heard? How many times? Is there speech? Which instrument plays? yes no one two three
{"Potential ambiguities": [], "Audio caption": ""} UNCERTAIN_AUDIO_INFORMATION_DETECTED
the quick brown fox jumps over the lazy dog 0123456789 .,;:!?()[]{}"'-_/+=*%<>@#&
"""


def train_byte_level_bpe(
    vocab_size: int = 400, extra_texts: Iterable[str] = ()
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE on a built-in English corpus plus ``extra_texts``.

    Returns the ``vocab`` and ``merges`` that GPT-2 style tokenizer classes accept. Deterministic:
    the same arguments give the same tokenizer.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [line for line in _CORPUS.splitlines() if line] + list(extra_texts)
    tokenizer.train_from_iterator(corpus * 4, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return model["vocab"], merges


def qwen2_tokenizer(
    special_tokens: Sequence[str], chat_template: str, extra_texts: Iterable[str] = ()
) -> PreTrainedTokenizerBase:
    """A ``Qwen2Tokenizer`` on the local BPE, set up like the Qwen chat checkpoints.

    It ends turns with ``<|im_end|>`` (its eos), pads on the left with ``<|endoftext|>`` (decoder-only
    models generate from the right end of a batch) and keeps ``<|im_start|>`` and ``special_tokens``
    (media placeholders) as single tokens. ``extra_texts`` join the BPE corpus, so that text a test
    expects back (a fixed answer) takes few tokens.
    """
    from transformers import Qwen2Tokenizer

    vocab, merges = train_byte_level_bpe(extra_texts=extra_texts)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens=["<|im_start|>", *special_tokens],
        chat_template=chat_template,
    )


def vocab_with_special_tokens(
    vocab: dict[str, int], before: Iterable[str] = (), after: Iterable[str] = ()
) -> dict[str, int]:
    """Renumber ``vocab`` with the special tokens ``before`` it and ``after`` it, ids in the order given.

    Tokenizers hard-code where some special tokens sit (RoBERTa: ``<s>`` 0, ``<pad>`` 1; Whisper: each
    language id is ``<|startoftranscript|>`` + 1 + its rank), so they go in the vocab, not on top of it.
    """
    ordered = [*before, *sorted(vocab, key=vocab.__getitem__), *after]
    if len(set(ordered)) != len(ordered):
        raise ValueError("special tokens must be new to the vocab and unique")
    return {token: index for index, token in enumerate(ordered)}
