"""Parse and validate the answers of the fusion and QA LLMs.

LLM answers are messy: reasoning models prefix a ``<think>`` trace, chat models wrap JSON in code fences
or a sentence of preamble. The parsers here tolerate all of that, and raise :class:`ParseError` with a
short reason (which the step sends back to the model when it re-asks) for anything they cannot use.

Example:
    >>> parse_fusion_answer('<think>A dog.</think>```json\\n{"Audio caption": "A dog barks."}\\n```')
    FusionAnswer(caption='A dog barks.', ambiguities=[], uncertain=False, reasoning='A dog.')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SENTINEL = "UNCERTAIN_AUDIO_INFORMATION_DETECTED"
CAPTION_KEY = "Audio caption"
AMBIGUITIES_KEY = "Potential ambiguities"
QA_PAIRS_KEY = "qa_pairs"

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_CONFIDENCE = re.compile(r"\(\s*\d+(?:\.\d+)?\s*%\s*\)")  # a tag's confidence as the cues write it: "(87%)"
_WORD = re.compile(r"[a-z]+")
# words that carry no content of their own: an answer made of them ("Yes, twice.") needs no support
_FUNCTION_WORDS = frozenset(
    "a an the and or but nor of to in on at by for from with without into over under after before during "
    "while then than as is are was were be been being it its this that these those there here what which "
    "who whom whose when where why how yes no not none one two three four five six seven eight nine ten "
    "once twice several many few some any all both each more most less least very also only just can could "
    "may might seems seem likely possibly probably perhaps heard hear hears sound sounds audio clip "
    "does do did has have had they them their someone something".split()
)


class ParseError(ValueError):
    """An answer that cannot be used; the message says why in a few words."""


@dataclass(frozen=True)
class FusionAnswer:
    """A parsed fusion answer: a caption with its doubts, or ``uncertain`` (the sentinel) without one."""

    caption: str | None
    ambiguities: list[str] = field(default_factory=list)
    uncertain: bool = False
    reasoning: str | None = None


def split_reasoning(text: str) -> tuple[str, str | None]:
    """``(answer, reasoning)``: the text without its ``<think>`` trace, and the trace (``None`` if none).

    Reasoning models' chat templates often open ``<think>`` in the prompt, so the answer may hold only
    the closing tag: everything before it is then the trace.
    """
    traces = [match.strip() for match in _THINK.findall(text)]
    answer = _THINK.sub("", text)
    if "</think>" in answer:
        head, answer = answer.rsplit("</think>", 1)
        traces.insert(0, head.replace("<think>", "").strip())
    reasoning = "\n\n".join(trace for trace in traces if trace)
    return answer.strip(), reasoning or None


def extract_json(text: str) -> Any:
    """The first JSON object or array in ``text``, inside a code fence or among other text."""
    decoder = json.JSONDecoder()
    for candidate in [*_FENCE.findall(text), text]:
        for start, char in enumerate(candidate):
            if char not in "{[":
                continue
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, (dict, list)):
                return value
    raise ParseError("no JSON object found" if text.strip() else "empty answer")


def _normalized_keys(value: dict[str, Any]) -> dict[str, Any]:
    # models vary the keys' case and separators ("audio_caption"); their meaning does not vary
    return {re.sub(r"[\s_-]+", " ", str(key)).strip().lower(): item for key, item in value.items()}


def _string_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ParseError(f'"{name}" must be a list of strings')
    return [item.strip() for item in value if item.strip()]


def parse_fusion_answer(text: str | None) -> FusionAnswer:
    """Parse a fusion answer: the sentinel or ``{"Potential ambiguities": [...], "Audio caption": "..."}``."""
    answer, reasoning = split_reasoning(text or "")
    if SENTINEL in answer:
        return FusionAnswer(caption=None, uncertain=True, reasoning=reasoning)
    value = extract_json(answer)
    if not isinstance(value, dict):
        raise ParseError("the answer must be a JSON object, not a list")
    fields = _normalized_keys(value)
    caption = fields.get(CAPTION_KEY.lower())
    if not isinstance(caption, str) or not caption.strip():
        raise ParseError(f'"{CAPTION_KEY}" must be a non-empty string')
    if _CONFIDENCE.search(caption):
        raise ParseError("the caption must not contain confidence numbers")
    ambiguities = _string_list(fields.get(AMBIGUITIES_KEY.lower()), AMBIGUITIES_KEY)
    return FusionAnswer(caption=caption.strip(), ambiguities=ambiguities, reasoning=reasoning)


def parse_qa_answer(text: str | None) -> list[dict[str, str]]:
    """The pairs of a QA answer ``{"qa_pairs": [{"question", "answer", "qa_type"}, ...]}`` (or a bare list).

    Only the structure is checked here: every pair has the three fields as strings (stripped; maybe empty).
    """
    answer, _ = split_reasoning(text or "")
    value = extract_json(answer)
    if isinstance(value, dict):
        value = _normalized_keys(value).get(QA_PAIRS_KEY.replace("_", " "))
    if not isinstance(value, list) or not value:
        raise ParseError(f'the answer must be {{"{QA_PAIRS_KEY}": [...]}} with at least one pair')
    pairs = []
    for item in value:
        fields = _normalized_keys(item) if isinstance(item, dict) else {}
        pair = {name: fields.get(name.replace("_", " ")) for name in ("question", "answer", "qa_type")}
        if not all(isinstance(field_value, str) for field_value in pair.values()):
            raise ParseError('every pair must be an object with string "question", "answer" and "qa_type"')
        pairs.append({name: field_value.strip() for name, field_value in pair.items()})
    return pairs


def content_words(text: str) -> set[str]:
    """Lower-case content words of ``text``, crudely stemmed (``barks`` -> ``bark``)."""
    words = _WORD.findall(text.lower())
    return {_stem(word) for word in words if len(word) > 2 and word not in _FUNCTION_WORDS}


def _stem(word: str) -> str:
    """A crude stem that maps a word's common forms together (``times``/``time``, ``dancing``/``dance``)."""
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    else:
        if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
            word = word[:-2]
        elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
            word = word[:-1]
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def validate_qa_pairs(
    pairs: Sequence[dict[str, str]],
    sources: Iterable[str],
    qa_types: Sequence[str],
    min_grounding: float = 0.5,
) -> tuple[list[dict[str, str]], list[str]]:
    """Split ``pairs`` into kept pairs and the reasons the others were rejected.

    A pair is kept when its question and answer are non-empty, its ``qa_type`` is one of ``qa_types``,
    its question is new (case and punctuation aside), and at least ``min_grounding`` of the content
    words of its question and answer occur in ``sources`` (the caption and the cues it was written
    from). The question counts too: "How many times does the dog bark?" - "Twice." is about a dog.
    """
    known = set().union(*(content_words(text) for text in sources if text))
    kept: list[dict[str, str]] = []
    rejected: list[str] = []
    seen: set[str] = set()
    for pair in pairs:
        question, answer, qa_type = pair["question"], pair["answer"], pair["qa_type"]
        key = " ".join(_WORD.findall(question.lower()))
        words = content_words(f"{question} {answer}")
        grounded = len(words & known) / len(words) if words else 1.0
        if not question or not answer:
            rejected.append(f"empty question or answer: {question!r}")
        elif qa_type not in qa_types:
            rejected.append(f"unknown qa_type {qa_type!r} (allowed: {', '.join(qa_types)})")
        elif key in seen:
            rejected.append(f"duplicate question: {question!r}")
        elif grounded < min_grounding:
            rejected.append(f"not grounded in the caption or cues: {question!r} {answer!r}")
        else:
            kept.append(dict(pair))
        seen.add(key)
    return kept, rejected
