"""AIR-Bench Foundation: multiple-choice questions on sound and music.

In the FusionAudio eval JSON the options are listed in the instruction, ``Choose the most suitable answer
...\\n<question>\\nOptions: [a, b, c, d]`` (or ``<question> Options: a, b, c, d``, or ``(A) a (B) b``), and
the answer is one option's text. Options may hold commas, brackets and numbers (``[[0.44, 2.38], [3.85,
10.02]]``): they are split at top-level commas, and pieces that together spell the answer are joined back
into one option. AIR-Bench's own ``Foundation_meta.json`` gives them as ``choice_a`` .. ``choice_d`` (two
to four) and the answer as ``answer_gt``; its rows get the instruction AIR-Bench's inference script sends.
"""

from __future__ import annotations

import re
import string
from typing import Any

import datasets

from fusion_datasets.builders.base import register
from fusion_datasets.builders.qa import QA_FEATURES, FusionAudioQABuilder, from_air_bench

_PREAMBLE = re.compile(r"^\s*Choose the most suitable answer from options[^\n]*\n")
_LETTERED = re.compile(r"\(([A-Z])\)\s*")
_BRACKETS = {"[": "]", "(": ")", "{": "}"}
CHOICES = ("choice_a", "choice_b", "choice_c", "choice_d")  # AIR-Bench's own fields
PROMPT = ("Choose the most suitable answer from options A, B, C, and D to respond the question in next line, "
          "you may only choose A or B or C or D.")  # AIR-Bench's Inference_Foundation.py


def _split_top_level(text: str) -> list[str]:
    pieces, depth, start = [], 0, 0
    for position, char in enumerate(text):
        depth += char in _BRACKETS
        depth -= char in _BRACKETS.values()
        if char == "," and depth == 0:
            pieces.append(text[start:position])
            start = position + 1
    return [piece.strip() for piece in [*pieces, text[start:]] if piece.strip()]


def _spaced(text: str) -> str:
    return re.sub(r"\s*,\s*", ", ", text.strip())


def parse_options(instruction: str, answer: str = "") -> tuple[str, list[str]]:
    """The question and options of a multiple-choice instruction; ``answer`` rejoins an option with commas.

    Example:
        >>> parse_options("Which spans?\\nOptions: [[0.0, 1.5], [2, 3]]", "[2, 3]")
        ('Which spans?', ['[0.0, 1.5]', '[2, 3]'])
        >>> parse_options("What is it? Options: rock, pop, hip hop, jazz, blues", "hip hop, jazz")[1]
        ['rock', 'pop', 'hip hop, jazz', 'blues']
    """
    head, found, tail = instruction.rpartition("Options:")
    if not found:
        return _PREAMBLE.sub("", instruction).strip(), []
    question, tail = _PREAMBLE.sub("", head).strip(), tail.strip()
    if _LETTERED.match(tail):
        return question, [option.strip() for option in _LETTERED.split(tail)[2::2]]
    if tail[:1] == "[" and tail[-1:] == "]" and len(_split_top_level(tail)) == 1:
        tail = tail[1:-1]
    pieces = _split_top_level(tail)
    target = _spaced(answer)
    if target in map(_spaced, pieces):
        return question, pieces
    for first in range(len(pieces)):
        for last in range(first + 1, len(pieces)):
            if _spaced(", ".join(pieces[first : last + 1])) == target:
                return question, [*pieces[:first], ", ".join(pieces[first : last + 1]), *pieces[last + 1 :]]
    return question, pieces


def answer_letter(options: list[str], answer: str) -> str | None:
    """The letter (A, B, ...) of the option ``answer`` names, by text or by letter; None if none matches."""
    for index, option in enumerate(options):
        if _spaced(option).lower() == _spaced(answer).lower():
            return string.ascii_uppercase[index]
    match = re.fullmatch(r"\(?([A-Z])\)?\.?|\(([A-Z])\).*", answer.strip(), flags=re.DOTALL)
    letter = match and (match[1] or match[2])
    return letter if letter and string.ascii_uppercase.index(letter) < len(options) else None


def _choices(item: dict[str, Any]) -> list[str]:
    """The options of a row of AIR-Bench's ``Foundation_meta.json`` (``choice_c``, ``choice_d`` may be absent)."""
    return [item[field] for field in CHOICES if isinstance(item.get(field), str)]


@register("air-bench-foundation")
class AirBenchFoundation(FusionAudioQABuilder):
    """AIR-Bench Foundation from its own ``Foundation/`` folder (``Foundation_meta.json``, the audio in
    ``<task_name>_<dataset_name>/``) or the FusionAudio eval JSON; rows get ``options`` and ``answer_letter``."""

    FEATURES = datasets.Features({
        **QA_FEATURES,
        "options": datasets.List(datasets.Value("string")),
        "answer_letter": datasets.Value("string"),
    })

    def normalize(self, item: dict[str, Any]) -> dict[str, Any]:
        options = _choices(item)
        lines = [f"{string.ascii_uppercase[index]}. {option}" for index, option in enumerate(options)]
        return from_air_bench(item, "\n".join([PROMPT, str(item.get("question")), *lines]) if options else None)

    def extra(self, item: dict[str, Any], where: str) -> dict[str, Any] | None:
        options = _choices(item)
        question = str(item.get("question"))
        if not options:
            question, options = parse_options(item["instruction"], item["output"])
        letter = answer_letter(options, item["output"])
        if letter is None:
            self.report.skip("answer_not_in_options", where, f"{item['output']!r} not in {options}")
            return None
        return {"question": question, "options": options, "answer_letter": letter}
