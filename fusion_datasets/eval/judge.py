"""An LLM judge for open-ended answers, through the chat backends (any served or in-process model).

Two rubrics, each a versioned prompt under ``fusion_datasets/prompts/``:

- ``audiobench`` (AudioCaps-QA, WavCaps-QA, Clotho-AQA's open score): the model's answer against the
  reference answer (or all of a question's answers), rated 0-5 as in AudioBench's model-as-judge; reports
  multiply the mean by 20. How a verdict is read (``parse``, each its own protocol, :data:`JUDGE_PROTOCOLS`):
  ``"last-token"`` as AudioBench's ``eval_llama3_70b.py`` (:func:`parse_last_token`), ``"fusionaudio"`` as
  FusionAudio's ``LLM_judge.py`` (:func:`parse_fusionaudio`), both never re-asked, a failure scoring 0;
  ``"rating-line"`` takes its last ``Rating: N`` (:func:`parse_rating`) and re-asks a verdict without one;
- ``air-bench-chat`` (AIR-Bench Chat): two answers, each scored 1-10 against the clip's description
  (``meta_info``), as AIR-Bench's GPT-4 judge does; a row's ``reference_first`` (default true) puts the
  reference answer first, as AIR-Bench does, else the model's.

:class:`AnswerJudge` is a :class:`~fusion_datasets.llm.step.ChatStep`: a verdict it cannot parse is
shown back to the judge with the reason and re-asked (``max_reasks``), then recorded as the row's error;
the judge's answer (``judge_answer``), its model and prompt version (``provenance``) are kept per row.

Example:
    >>> from fusion_datasets.chat.backends import ServerBackendConfig
    >>> from fusion_datasets.testing.stub_chat import StubChatServer  # a judge that always gives 4
    >>> with StubChatServer(answer=lambda request: "Explanation: same source.\\nRating: 4") as server:
    ...     judge = AnswerJudge(backend=ServerBackendConfig(model="judge", base_urls=(server.base_url,)))
    ...     verdicts = judge({"question": ["What barks?"], "answer": ["A dog."], "prediction": ["A dog."]})
    >>> verdicts["judge_score"], verdicts["errors"]
    ([4.0], [[]])
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fusion_datasets.llm.parsing import ParseError, split_reasoning
from fusion_datasets.llm.step import ChatStep, ChatStepConfig
from fusion_datasets.media import MediaBatch
from fusion_datasets.prompts import read_prompt

JudgeResult = tuple["float | None", "float | None", str]  # the answer's score, the reference's (chat), the verdict


@dataclass(frozen=True)
class Rubric:
    prompt_version: str
    low: int
    high: int
    report_scale: float  # what a mean score is multiplied by in reports
    answer_format: str  # what a re-ask asks for


RUBRICS = {
    "audiobench": Rubric("judge_audiobench_v2", 0, 5, 20.0,
                         'an explanation line, then the line "Rating: N" with N an integer from 0 to 5'),
    "air-bench-chat": Rubric("judge_airbench_chat_v1", 1, 10, 10.0,  # FusionAudio reports the mean x10
                             "the two scores (integers from 1 to 10) on the first line, then an explanation"),
}
# how an audiobench verdict is read, and the protocol each reading is
JUDGE_PROTOCOLS = {"last-token": "audiobench-judge/last-token", "fusionaudio": "fusionaudio-judge/last-token",
                   "rating-line": "audiobench-judge/rating-line"}
PARSES = tuple(JUDGE_PROTOCOLS)
_NUMBER_WORDS = dict(zip("zero one two three four five six seven eight nine ten".split(), range(11)))
_NUMBER = r"(-?\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"  # a minus sign is kept: "-1" is not 1
_RATING = re.compile(r"\b(?:rating|score|grade)\b\W*?" + _NUMBER, re.IGNORECASE)
_MARKUP = re.compile(r"[*_`#]")
_LABELS = re.compile(r"\banswer\s*[12]\b|(?:/|\bout\s+of)\s*10\b", re.IGNORECASE)  # "Answer 1: 8/10"


def _quoted(text: str) -> str:
    return repr(text[:200] + ("..." if len(text) > 200 else ""))


def _number(token: str, rubric: Rubric, answer: str) -> int:
    value = float(_NUMBER_WORDS.get(token.lower(), token))
    if not value.is_integer() or not rubric.low <= value <= rubric.high:
        allowed = f"an integer from {rubric.low} to {rubric.high}"
        raise ParseError(f"the score {token} is not {allowed} in {_quoted(answer)}")
    return int(value)


def parse_rating(text: str | None, rubric: Rubric = RUBRICS["audiobench"]) -> int:
    """The rating of an AudioBench-style verdict: the last ``Rating: N`` (also ``**Score:** 4/5``,
    ``rating - four``), or a verdict that is only a number. Raises :class:`ParseError`.

    Example:
        >>> parse_rating("<think>Close.</think>Explanation: same source.\\n**Rating:** 4/5")
        4
    """
    answer = _MARKUP.sub("", split_reasoning(text or "")[0]).strip()
    found = _RATING.findall(answer)
    if found:
        return _number(found[-1], rubric, answer)
    bare = re.fullmatch(_NUMBER + r"\W*", answer, re.IGNORECASE)
    if bare:
        return _number(bare[1], rubric, answer)
    raise ParseError(f'no "Rating: N" line in {_quoted(answer)}' if answer else "empty verdict")


def _last_token(text: str | None) -> str | None:
    tokens = split_reasoning(text or "")[0].split()
    return tokens[-1] if tokens else None


def parse_last_token(text: str | None) -> float | None:
    """The rating of a verdict as AudioBench's ``eval_llama3_70b.py`` reads it: its last whitespace-separated
    token as a float, whatever its value; ``None`` where that fails (the reference then counts 0). A
    reasoning trace is left out first, and a token that is not a finite number (``nan``) fails.

    Example:
        >>> [parse_last_token(v) for v in ("Rating: 4", "4 out of 5.", "Rating: (3)", "Rating: four", "Rating: 6")]
        [4.0, 5.0, None, None, 6.0]
    """
    try:
        value = float(_last_token(text) or "nan")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_fusionaudio(text: str | None, rubric: Rubric = RUBRICS["audiobench"]) -> float | None:
    """The rating of a verdict as FusionAudio's ``LLM_judge.py`` reads it: its last whitespace-separated token,
    brackets stripped, as a number from ``rubric.low`` to ``rubric.high``; ``None`` where that fails (the
    reference then counts 0). A reasoning trace is left out first.

    Example:
        >>> [parse_fusionaudio(v) for v in ("Rating: 4", "4 out of 5.", "Rating: (3)", "Rating: four", "Rating: 6")]
        [4.0, 5.0, 3.0, None, None]
    """
    try:
        value = float((_last_token(text) or "nan").strip("()"))
    except ValueError:
        return None
    return value if rubric.low <= value <= rubric.high else None  # NaN fails both comparisons


def parse_score_pair(text: str | None, rubric: Rubric = RUBRICS["air-bench-chat"]) -> tuple[int, int]:
    """The two scores on the first non-empty line of an AIR-Bench chat verdict (``8 6``, ``8, 6``,
    ``Scores: 8/10 and 6/10``). Raises :class:`ParseError`.

    Example:
        >>> parse_score_pair("**8 6**\\nAnswer 1 is close to the reference.")
        (8, 6)
    """
    answer = _MARKUP.sub("", split_reasoning(text or "")[0]).strip()
    first = next((line for line in answer.splitlines() if line.strip()), "")
    numbers = re.findall(r"\d+(?:\.\d+)?", _LABELS.sub(" ", first))
    if len(numbers) != 2:
        raise ParseError(f"the first line must hold exactly two scores, got {_quoted(first)}")
    return _number(numbers[0], rubric, answer), _number(numbers[1], rubric, answer)


def judge_item(rubric: str, question: str, reference: str | Sequence[str], prediction: str,
               meta_info: str | None = None, reference_first: bool = True) -> dict[str, Any]:
    """The data block of a judge prompt: what the judge sees of one answer. ``reference`` may be all the
    answers a question has (audiobench: the judge sees them all; air-bench-chat: the first is shown)."""
    references = [reference] if isinstance(reference, str) else list(reference)
    if rubric == "audiobench":
        shown = {"reference answer": references[0]} if len(references) == 1 else {"reference answers": references}
        return {"question": question, **shown, "model answer": prediction}
    first, second = (references[0], prediction) if reference_first else (prediction, references[0])
    return {"audio description": meta_info or "", "question": question, "answer 1": first, "answer 2": second}


@dataclass(frozen=True)
class JudgeConfig(ChatStepConfig):
    """Options of :class:`AnswerJudge`; ``prompt`` defaults to the rubric's versioned prompt, ``parse``
    (audiobench) is one of :data:`PARSES`."""

    rubric: str = "audiobench"
    parse: str = "last-token"
    placeholder: ClassVar[str] = "{item_json}"
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.rubric not in RUBRICS:
            raise ValueError(f"rubric must be one of {', '.join(RUBRICS)}, got {self.rubric!r}")
        if self.parse not in PARSES:
            raise ValueError(f"parse must be one of {', '.join(PARSES)}, got {self.parse!r}")
        if not self.prompt:
            version = RUBRICS[self.rubric].prompt_version
            object.__setattr__(self, "prompt", read_prompt(version))
            object.__setattr__(self, "prompt_version", version)
        super().__post_init__()


class AnswerJudge(ChatStep[JudgeConfig]):
    """Reads ``question``, ``answer`` (the reference, or a list of references), ``prediction`` and, for
    AIR-Bench chat, ``meta_info`` and ``reference_first``; writes ``judge_score`` (``None``: a verdict
    read by the last token that does not parse), ``judge_reference_score`` (AIR-Bench chat) and ``judge_answer``.

    Rows without a prediction are not sent to the judge: their columns stay ``None``.
    """

    stage = "judge"
    config_class = JudgeConfig

    @property
    def rubric(self) -> Rubric:
        return RUBRICS[self.config.rubric]

    @property
    def answer_format(self) -> str:  # type: ignore[override]  # depends on the rubric
        return self.rubric.answer_format

    def result_features(self) -> dict[str, Any]:
        from datasets import Value

        return {"judge_score": Value("float64"), "judge_reference_score": Value("float64"),
                "judge_answer": Value("string")}

    def pending_rows(self, media: MediaBatch) -> list[int]:
        predictions, verdicts = media.column("prediction"), media.column("judge_answer")
        return [row for row in range(media.size)
                if isinstance(predictions[row], str) and predictions[row].strip() and verdicts[row] is None]

    def prompt_data(self, media: MediaBatch, row: int) -> dict[str, Any]:
        columns = ("question", "answer", "prediction", "meta_info")
        return judge_item(self.config.rubric, *(media.column(column)[row] for column in columns),
                          reference_first=media.column("reference_first", True)[row])

    def parse(self, media: MediaBatch, row: int, text: str) -> JudgeResult:
        if self.config.rubric == "audiobench":
            if self.config.parse == "rating-line":
                return float(parse_rating(text, self.rubric)), None, text
            if self.config.parse == "fusionaudio":
                return parse_fusionaudio(text, self.rubric), None, text
            return parse_last_token(text), None, text
        first, second = parse_score_pair(text, self.rubric)
        if media.column("reference_first", True)[row]:
            return float(second), float(first), text
        return float(first), float(second), text

    def store(self, outputs: dict[str, list], row: int, result: JudgeResult | None) -> None:
        if result is not None:
            for column, value in zip(("judge_score", "judge_reference_score", "judge_answer"), result):
                outputs[column][row] = value


def judge_columns(columns: dict[str, list], config: JudgeConfig, batch_size: int = 64) -> dict[str, list]:
    """``columns`` (``question``, ``answer``, ``prediction`` [, ``meta_info``, ``reference_first``]) with the
    judge's columns, ``errors`` and ``llm_usage`` added, judged ``batch_size`` rows per round of backend calls."""
    judge = AnswerJudge(config)
    added: dict[str, list] = {}
    for start in range(0, len(columns["prediction"]), batch_size):
        batch = {name: values[start:start + batch_size] for name, values in columns.items()}
        for name, values in judge(batch).items():
            added.setdefault(name, []).extend(values)
    return {**columns, **added}
