"""AIR-Bench Foundation's two scorings of multiple-choice answers; ``report.json`` names each row's protocol.

- ``air-bench-foundation/strict``: each answer is mapped to an option by rule
  (:func:`~fusion_datasets.eval.answers.choose_option`, never at random); an answer mapped to no option
  (``unmappable``) and a question without an answer are wrong. Every question is in the denominator.
- ``air-bench-foundation/aligned``: AIR-Bench's own (``align_in_foundation.py``, then
  ``score_foundation.py``). An LLM is shown the question, the answer and the lettered options and told to
  reply with the letter of the option the answer matches, and to choose one at random when none does, so
  an answer that matches nothing still scores about 1 in 4 on four options. Its reply is read as
  ``score_foundation.py`` reads it (:func:`reply_letter`); a reply it cannot read (``unaligned``) and a
  question without an answer are left out of the denominator. The aligner samples at temperature 1
  (AIR-Bench's default) with a fixed seed, and is never re-asked.

Example:
    >>> aligner = OptionAligner(backend=TransformersBackendConfig(model="Qwen/Qwen2.5-7B-Instruct"))  # doctest: +SKIP
    >>> aligner({"question": ["Which genre?"], "options": [["rock", "jazz"]], "prediction": ["Jazz, I think"]})
    ... # doctest: +SKIP
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, ClassVar

from fusion_datasets.llm.parsing import split_reasoning
from fusion_datasets.llm.step import ChatStep, ChatStepConfig
from fusion_datasets.media import MediaBatch
from fusion_datasets.prompts import read_prompt

STRICT = "air-bench-foundation/strict"
ALIGNED = "air-bench-foundation/aligned"
PROMPT_VERSION = "align_airbench_foundation_v1"
READ_LETTERS = "ABCD"  # the letters score_foundation.py reads in a reply


def reply_letter(text: str | None) -> str | None:
    """The option letter ``score_foundation.py`` reads in an aligner's reply (newlines removed, trace left
    out): its first character if one of A-D, else its second-to-last ("The answer is B."); else None.

    Example:
        >>> [reply_letter(reply) for reply in ("B", "C. rock", "The answer is D.", "none", "As an AI")]
        ['B', 'C', 'D', None, 'A']
    """
    reply = split_reasoning(text or "")[0].strip().replace("\n", "")
    return next((char for char in (reply[:1], reply[-2:-1]) if char and char in READ_LETTERS), None)


@dataclass(frozen=True)
class AlignConfig(ChatStepConfig):
    """Options of :class:`OptionAligner`: AIR-Bench's sampling (temperature 1), seeded, never re-asked."""

    placeholder: ClassVar[str] = "{item_json}"
    max_new_tokens: int = 256
    temperature: float = 1.0
    seed: int | None = 0
    max_reasks: int = 0

    def __post_init__(self) -> None:
        if not self.prompt:
            object.__setattr__(self, "prompt", read_prompt(PROMPT_VERSION))
            object.__setattr__(self, "prompt_version", PROMPT_VERSION)
        super().__post_init__()


class OptionAligner(ChatStep[AlignConfig]):
    """Reads ``question``, ``options`` and ``prediction``; writes ``aligned_letter`` (:func:`reply_letter` of
    the reply, ``None`` where it holds none) and ``align_answer`` (the reply). Rows without a prediction are
    not sent: their columns stay ``None``."""

    stage = "align"
    config_class = AlignConfig
    answer_format = "a single letter"

    def result_features(self) -> dict[str, Any]:
        from datasets import Value

        return {"aligned_letter": Value("string"), "align_answer": Value("string")}

    def pending_rows(self, media: MediaBatch) -> list[int]:
        predictions = media.column("prediction")
        return [row for row in range(media.size) if isinstance(predictions[row], str) and predictions[row].strip()]

    def prompt_data(self, media: MediaBatch, row: int) -> dict[str, Any]:
        options = media.column("options")[row]
        return {"question": media.column("question")[row], "response": media.column("prediction")[row],
                "options": dict(zip(string.ascii_uppercase, options))}

    def parse(self, media: MediaBatch, row: int, text: str) -> tuple[str | None, str]:
        return reply_letter(text), text

    def store(self, outputs: dict[str, list], row: int, result: tuple[str | None, str] | None) -> None:
        if result is not None:
            outputs["aligned_letter"][row], outputs["align_answer"][row] = result


def aligned_correct(columns: dict[str, list], config: AlignConfig) -> tuple[list[bool | None], dict[str, list]]:
    """Whether each question's aligned letter is its ``answer_letter`` (``None``: left out, no letter or no
    answer), and the aligner's columns (``aligned_letter``, ``align_answer``, ``errors``, ``llm_usage``)."""
    aligned = OptionAligner(config)(columns)
    correct = [None if letter is None else letter == expected
               for letter, expected in zip(aligned["aligned_letter"], columns["answer_letter"])]
    return correct, aligned
