"""AIR-Bench Foundation's two scorings of multiple-choice answers; ``report.json`` names each row's protocol.

- ``air-bench-foundation/strict``: each answer is mapped to an option by rule
  (:func:`~fusion_datasets.eval.answers.choose_option`, never at random); an answer mapped to no option
  (``unmappable``) and a question without an answer are wrong. Every question is in the denominator.
- ``air-bench-foundation/aligned``: AIR-Bench's own (``align_in_foundation.py``, then
  ``score_foundation.py``). An LLM is shown the question, the answer and the lettered options and told to
  reply with the letter of the option the answer matches, and to choose one at random when none does, so
  an answer that matches nothing still scores about 1 in 4 on four options. Its reply is read as
  ``score_foundation.py`` reads it (:func:`reply_letter`); a reply it cannot read (``unaligned``) and a
  question without an answer are left out of the denominator. The aligner samples as AIR-Bench's script
  does, each question at temperature 1 or, half of them drawn at random, 2 (:func:`airbench_temperatures`,
  drawn from the seed and the question's id), with a fixed seed, and is never re-asked. A single temperature
  given instead is named in the protocol (``air-bench-foundation/aligned@t=0``, FusionAudio's alignment).

Both report accuracy per ``<task_name>_<dataset_name>`` (:func:`foundation_group`), as ``score_foundation.py``
groups it, and per task over its datasets under the protocol's ``/per-task`` label.

Example:
    >>> from fusion_datasets.chat.backends import ServerBackendConfig
    >>> from fusion_datasets.testing.stub_chat import StubChatServer  # an aligner that always replies "B"
    >>> with StubChatServer(answer=lambda request: "B") as server:
    ...     aligner = OptionAligner(backend=ServerBackendConfig(model="aligner", base_urls=(server.base_url,)))
    ...     aligner({"id": ["q1"], "question": ["Which genre?"], "options": [["rock", "jazz"]],
    ...              "prediction": ["Jazz, I think"]})["aligned_letter"]
    ['B']
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from fusion_datasets.llm.parsing import split_reasoning
from fusion_datasets.llm.step import ChatStep, ChatStepConfig
from fusion_datasets.media import MediaBatch
from fusion_datasets.prompts import read_prompt

STRICT = "air-bench-foundation/strict"
ALIGNED = "air-bench-foundation/aligned"
PROMPT_VERSION = "align_airbench_foundation_v1"
READ_LETTERS = "ABCD"  # the letters score_foundation.py reads in a reply
AIR_BENCH_TEMPERATURES = (1.0, 2.0)  # align_in_foundation.py: its default, and 2 for half the requests


def aligned_protocol(temperature: float | None) -> str:
    """The protocol of aligned scores sampled at ``temperature`` (``None``: AIR-Bench's mix of temperatures).

    Example:
        >>> aligned_protocol(None), aligned_protocol(0.0)
        ('air-bench-foundation/aligned', 'air-bench-foundation/aligned@t=0')
    """
    return ALIGNED if temperature is None else f"{ALIGNED}@t={temperature:g}"


def foundation_group(task: str | None, dataset: str | None) -> str:
    """The group ``score_foundation.py`` reports a question in: ``<task_name>_<dataset_name>``.

    Example:
        >>> foundation_group("Sound_AQA", "avqa"), foundation_group("Sound_AQA", None)
        ('Sound_AQA_avqa', 'Sound_AQA')
    """
    return f"{task}_{dataset}" if task and dataset else task or "multiple choice"


def airbench_temperatures(ids: Sequence[str], seed: int | None) -> list[float]:
    """Each question's aligner temperature as ``align_in_foundation.py`` draws it: 2 with probability 1/2,
    else 1; drawn from ``seed`` and the question's id, so a question keeps its temperature in any order."""
    low, high = AIR_BENCH_TEMPERATURES
    return [high if random.Random(f"{seed}:{row_id}").random() < 0.5 else low for row_id in ids]


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
    """Options of :class:`OptionAligner`: sampled (temperature 1, AIR-Bench's default), seeded, never re-asked."""

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


def aligned_correct(columns: dict[str, list], config: AlignConfig, mix: bool = True
                    ) -> tuple[list[bool | None], dict[str, list]]:
    """Whether each question's aligned letter is its ``answer_letter`` (``None``: left out, no letter or no
    answer), and the aligner's columns (``aligned_letter``, ``align_answer``, ``errors``, ``llm_usage``,
    ``align_temperature``). ``mix``: each question at its :func:`airbench_temperatures`, else all at
    ``config.temperature``."""
    size = len(columns["prediction"])
    temperatures = airbench_temperatures(columns["id"], config.seed) if mix else [config.temperature] * size
    aligned: dict[str, list] = {}
    for temperature in sorted(set(temperatures)):
        rows = [row for row in range(size) if temperatures[row] == temperature]
        replies = OptionAligner(replace(config, temperature=temperature))(
            {name: [values[row] for row in rows] for name, values in columns.items()})
        for name, values in replies.items():
            column = aligned.setdefault(name, [None] * size)
            for row, value in zip(rows, values):
                column[row] = value
    aligned["align_temperature"] = temperatures
    correct = [None if letter is None else letter == expected
               for letter, expected in zip(aligned["aligned_letter"], columns["answer_letter"])]
    return correct, aligned
