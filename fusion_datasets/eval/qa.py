"""``eval qa``: score an audio model's answers to a QA benchmark, as the paper's tables report them.

Each benchmark has a kind (from the builder that made it, or ``kind=``):

- ``closed`` (Clotho-AQA): normalised exact match (case, punctuation, articles, number words = digits;
  a yes/no answer is judged by its first word, with variants like "yeah" or "nope"); accuracy per
  question type (``yes/no``, ``single-word``);
- ``choice`` (AIR-Bench Foundation): the answer is mapped to one option: the exact option text, else an
  option letter ("B", "(B) ...", "the answer is B"), else the one option it names, else the most similar
  option (:data:`MIN_SIMILARITY`, a unique best); never at random. Accuracy per task; answers mapped to
  no option are wrong and counted (``unmappable``);
- ``audiobench`` (AudioCaps-QA, WavCaps-QA) and ``air-bench-chat``: an LLM judge (:mod:`.judge`).

A benchmark row without a prediction (none in the file, or the model failed) is wrong, scores the
lowest judge score, and is counted (``missing``). Predictions match rows by ``(audio_id, instruction)``.

Example:
    >>> closed_correct("Yes, it is.", "yes"), closed_correct("Two", "2"), closed_correct("a dog", "cat")
    (True, True, False)
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from fusion_datasets.eval.judge import RUBRICS, AnswerJudge, JudgeConfig, judge_columns
from fusion_datasets.eval.predict import Prediction, benchmark_name, load_benchmark, read_predictions
from fusion_datasets.eval.report import OVERALL, write_model_index, write_report
from fusion_datasets.llm.backends import BackendConfig

logger = logging.getLogger(__name__)

KINDS = {"clotho-aqa": "closed", "air-bench-foundation": "choice", "audiocaps-qa": "audiobench",
         "wavcaps-qa": "audiobench", "air-bench-chat": "air-bench-chat"}
QA_KINDS = ("closed", "choice", "audiobench", "air-bench-chat")
COUNT_METRICS = ("missing", "unmappable", "unjudged")
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


def closed_correct(prediction: str | None, reference: str) -> bool:
    """Whether ``prediction`` matches ``reference`` once normalised (a yes/no answer: its first word)."""
    if not prediction:
        return False
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


def _grouped(benchmark: str, metric: str, tasks: Sequence[str], values: Iterable[float | None],
             scale: float) -> list[dict[str, Any]]:
    """One row per task: ``scale`` x the mean of its values (``None``: left out of the mean)."""
    groups: dict[str, list[float]] = {}
    for task, value in zip(tasks, values):
        if value is not None:
            groups.setdefault(task, []).append(value)
    return [{"benchmark": benchmark, "task": task, "metric": metric, "value": scale * sum(group) / len(group),
             "n": len(group)} for task, group in groups.items()]


def _counted(benchmark: str, metric: str, tasks: Sequence[str], flags: Sequence[bool]
             ) -> list[dict[str, Any]]:
    """Per task and overall, how many rows are ``flags`` (a count, not a percentage; ``n``: the rows)."""
    groups: dict[str, list[bool]] = {}
    for task, flag in zip(tasks, flags):
        groups.setdefault(task, []).append(flag)
    rows = [{"benchmark": benchmark, "task": task, "metric": metric, "value": sum(group), "n": len(group)}
            for task, group in groups.items()]
    return rows + [{"benchmark": benchmark, "task": OVERALL, "metric": metric, "value": sum(flags),
                    "n": len(flags)}]


def match_predictions(columns: dict[str, list], predictions: Sequence[Prediction]
                      ) -> tuple[list[str | None], int]:
    """Each benchmark row's prediction, by ``(audio_id, instruction)``; the number of unused predictions."""
    by_key: dict[tuple[str, str | None], str | None] = {}
    for prediction in predictions:
        by_key.setdefault((prediction.audio_id, prediction.instruction), prediction.text)
    keys = list(zip(columns["audio_id"], columns["instruction"]))
    unused = len(set(by_key) - set(keys))
    if unused:
        logger.warning("%d predictions match no row of the benchmark", unused)
    return [by_key.get(key) for key in keys], unused


def _tasks(columns: dict[str, list], default: str) -> list[str]:
    return [task or default for task in columns.get("task", [None] * len(columns["id"]))]


def score_qa(benchmark: str, kind: str, columns: dict[str, list], judge: JudgeConfig | None = None
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Report rows and per-row results of ``columns`` (a benchmark's columns with ``prediction``)."""
    predictions, references = columns["prediction"], columns["answer"]
    missing = [not (prediction or "").strip() for prediction in predictions]
    items = [{"id": row_id, "prediction": prediction, "answer": answer}
             for row_id, prediction, answer in zip(columns["id"], predictions, references)]
    if kind == "closed":
        tasks = [question_type(reference) for reference in references]
        correct = [closed_correct(prediction, reference)
                   for prediction, reference in zip(predictions, references)]
        rows = _grouped(benchmark, "accuracy", tasks, correct, 100.0)
        for item, value in zip(items, correct):
            item["correct"] = value
    elif kind == "choice":
        tasks = _tasks(columns, "multiple choice")
        chosen = [choose_option(prediction, options)
                  for prediction, options in zip(predictions, columns["options"])]
        letters = [None if index is None else string.ascii_uppercase[index] for index in chosen]
        correct = [letter == expected for letter, expected in zip(letters, columns["answer_letter"])]
        rows = _grouped(benchmark, "accuracy", tasks, correct, 100.0)
        rows += _counted(benchmark, "unmappable", tasks,
                         [index is None and not gone for index, gone in zip(chosen, missing)])
        for item, letter, value in zip(items, letters, correct):
            item.update(chosen=letter, correct=value)
    else:
        if judge is None:
            raise ValueError(f"{benchmark} ({kind}) is scored by an LLM judge: give a judge model")
        rubric = RUBRICS[judge.rubric]
        tasks = _tasks(columns, "open-ended")
        judged = judge_columns({**columns, "meta_info": columns.get("meta_info", [None] * len(tasks))}, judge)
        scores = [rubric.low if gone else score for gone, score in zip(missing, judged["judge_score"])]
        rows = _grouped(benchmark, "judge_score", tasks, scores, rubric.report_scale)
        if kind == "air-bench-chat":
            rows += _grouped(benchmark, "reference_score", tasks, judged["judge_reference_score"], 1.0)
        rows += _counted(benchmark, "unjudged", tasks, [score is None for score in scores])
        for index, item in enumerate(items):
            item.update({name: judged[name][index] for name in
                         ("judge_score", "judge_reference_score", "judge_answer", "errors", "llm_usage")})
    rows += _counted(benchmark, "missing", tasks, missing)
    return rows, items


def run_qa_eval(
    predictions: str | Path,
    benchmark: str | Path,
    output: str | Path,
    *,
    model: str | None = None,
    kind: str | None = None,
    judge: BackendConfig | None = None,
    max_reasks: int = 2,
    judge_max_new_tokens: int = 256,
    split: str = "test",
    config: str | None = None,
    model_index: str | Path | None = None,
) -> dict[str, Any]:
    """``fusion-datasets eval qa``: score ``predictions`` on ``benchmark``; write the report into ``output``.

    Beside ``report.json`` and ``report.md``: ``items.jsonl`` (each row's prediction, verdict and the
    judge's raw answer) and ``details.json`` (kind, counts, the judge's model and prompt version).
    Prediction lines that cannot be used are logged with their ``file:line`` and counted there.
    ``model`` names the model in the report (default: the predictions file's name). A reasoning judge
    needs a ``judge_max_new_tokens`` that leaves room for its trace.

    Example:
        >>> judge = BackendConfig(kind="server", model="Qwen/Qwen2.5-72B-Instruct",
        ...                       base_urls=("http://127.0.0.1:8080",))  # doctest: +SKIP
        >>> run_qa_eval("preds.jsonl", "data/audiocaps-qa", "reports/acqa", judge=judge)  # doctest: +SKIP
    """
    name = benchmark_name(benchmark)
    kind = kind or KINDS.get(name)
    if kind not in QA_KINDS:
        raise ValueError(f"the kind of benchmark {name!r} is unknown: give kind ({', '.join(QA_KINDS)})")
    judge_config = None
    if judge is not None and kind in RUBRICS:
        judge_config = JudgeConfig(backend=judge, rubric=kind, max_reasks=max_reasks,
                                   max_new_tokens=judge_max_new_tokens)
    columns = load_benchmark(benchmark, split, config).remove_columns("audio")[:]
    answers, skipped = read_predictions(predictions)
    columns["prediction"], unused = match_predictions(columns, answers)
    rows, items = score_qa(name, kind, columns, judge_config)
    folder = Path(output)
    report = write_report(folder, model or Path(predictions).stem, rows)
    with open(folder / "items.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    details = {"benchmark": name, "kind": kind, "predictions": str(predictions), "rows": len(items),
               "skipped_predictions": dict(skipped), "unused_predictions": unused,
               "judge": judge_config and AnswerJudge(judge_config).provenance_entry()}
    (folder / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    if model_index:
        write_model_index(model_index, report, "audio-text-to-text", skip_metrics=COUNT_METRICS)
    return report
