"""How an answer is matched to a QA benchmark's references: normalised exact match, yes/no, options.

Example:
    >>> closed_correct("Yes, it is.", "yes"), closed_correct("Two", "2"), closed_correct("nine", ["11", "9"])
    (True, True, True)
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from difflib import SequenceMatcher

MIN_SIMILARITY = 0.6  # the least difflib ratio at which an answer is taken for an option
_NUMBERS = dict(zip(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split(), range(21)))
_TENS = dict(zip("twenty thirty forty fifty sixty seventy eighty ninety".split(), range(20, 100, 10)))
_YES = frozenset("yes yeah yep yup true correct affirmative".split())
_NO = frozenset("no nope nah false incorrect negative".split())
_ARTICLES = frozenset({"a", "an", "the"})
_LETTER = re.compile(
    r"^\s*\(?([A-Z])\)?[.:)]?\s*$"  # the whole answer: B, (B), B.
    r"|^\s*(?:\(([A-Z])\)|([A-Z])[.:)])(?:\s|$)"  # an answer that starts "(B) ...", "B. ...", "B) ..."
    r"|\b(?:answer|option|choice)\s*(?:is\s*)?:?\s*\(?([A-Z])\)?(?![\w])",  # "the answer is B", "Option: (C)"
    re.IGNORECASE,
)


def _words(text: str) -> list[str]:
    table = str.maketrans({char: " " for char in string.punctuation})
    return text.lower().translate(table).split()


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation or articles, number words as digits ("Twenty-one dogs." -> "21 dogs")."""
    words: list[str] = []
    for word in _words(text):
        if word in _ARTICLES:
            continue
        if word in _NUMBERS:
            number = _NUMBERS[word]
            if words and words[-1].isdigit() and int(words[-1]) in _TENS.values() and number < 10:
                words[-1] = str(int(words[-1]) + number)  # "twenty one"
                continue
            word = str(number)
        elif word in _TENS:
            word = str(_TENS[word])
        words.append(word)
    return " ".join(words)


def _yes_no(normalized: str) -> str | None:
    first = normalized.split(" ", 1)[0]
    return "yes" if first in _YES else "no" if first in _NO else None


def question_type(reference: str) -> str:
    """``yes/no`` when the reference answer is a yes or a no, else ``single-word`` (Clotho-AQA's split)."""
    normalized = normalize_answer(reference)
    return "yes/no" if _yes_no(normalized) and " " not in normalized else "single-word"


def closed_correct(prediction: str | None, reference: str | Sequence[str]) -> bool:
    """Whether ``prediction`` matches ``reference`` (or any of several) once normalised (a yes/no answer:
    its first word)."""
    if not prediction:
        return False
    if not isinstance(reference, str):
        return any(closed_correct(prediction, one) for one in reference)
    answer, expected = normalize_answer(prediction), normalize_answer(reference)
    if question_type(reference) == "yes/no":
        return _yes_no(answer) == _yes_no(expected)
    return answer == expected


def _loose(text: str) -> str:
    """Case and spacing aside, as the option is written (its commas and brackets kept), no final period."""
    return re.sub(r"\s*,\s*", ", ", " ".join(text.lower().split())).rstrip(".")


def choose_option(prediction: str | None, options: Sequence[str]) -> int | None:
    """The index of the option ``prediction`` gives, or ``None`` when it gives none unambiguously.

    Example:
        >>> options = ["[0.0, 1.5]", "[2, 3]", "rock, pop", "jazz"]
        >>> [choose_option(answer, options) for answer in ("[2,3]", "(C) rock, pop", "It is jazz.", "blues")]
        [1, 2, 3, None]
    """
    if not prediction or not prediction.strip() or not options:
        return None
    exact = [index for index, option in enumerate(options) if _loose(option) == _loose(prediction)]
    if exact:
        return exact[0]
    match = _LETTER.search(prediction)
    letter = next((group for group in match.groups() if group), None) if match else None
    if letter and string.ascii_uppercase.index(letter.upper()) < len(options):
        return string.ascii_uppercase.index(letter.upper())
    answer = normalize_answer(prediction)
    named = [index for index, option in enumerate(options)
             if normalize_answer(option) and re.search(rf"\b{re.escape(normalize_answer(option))}\b", answer)]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        return None  # it names several options
    similarity = [SequenceMatcher(None, answer, normalize_answer(option)).ratio() for option in options]
    best = max(similarity)
    return similarity.index(best) if best >= MIN_SIMILARITY and similarity.count(best) == 1 else None
