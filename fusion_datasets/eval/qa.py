"""``eval qa``: score an audio model's answers to a QA benchmark, as the paper's tables report them.

The unit scored is a question: the benchmark rows that share ``(audio_id, instruction)`` (Clotho-AQA's
three annotators) are one question, scored once against all their answers, as FusionAudio's and
AudioBench's evaluations do. Each benchmark has a kind (from the builder that made it, or ``kind=``):

- ``closed`` (Clotho-AQA, protocol ``clotho-aqa/grouped``): normalised exact match to any of the
  question's answers (case, punctuation, articles, number words = digits; a yes/no answer is judged by its
  first word, with variants like "yeah" or "nope"); accuracy per question type (``yes/no``,
  ``single-word``: the type of most of its answers). With a judge, also the open score: the judge rates
  the answer against all the question's answers, as ``audiobench``;
- ``choice`` (AIR-Bench Foundation, protocol ``air-bench-foundation/strict``): the answer is mapped to one
  option: the exact option text, else an option letter ("B", "(B) ...", "the answer is B"), else the one
  option it names, else the most similar option (:data:`~fusion_datasets.eval.answers.MIN_SIMILARITY`, a unique
  best); never at random. Answers mapped to no option are wrong and counted (``unmappable``). With a judge,
  also AIR-Bench's own ``air-bench-foundation/aligned`` (:mod:`.foundation`). Accuracy per
  ``<task_name>_<dataset_name>``, as ``score_foundation.py`` groups it, and, as a second view under the
  protocol's ``/per-task`` label, per task over its datasets;
- ``audiobench`` (AudioCaps-QA, WavCaps-QA): an LLM judge rates each answer 0-5 (:mod:`.judge`), mean
  x20; ``fusionaudio-judge/last-token`` (the default) and ``audiobench-judge/last-token`` read verdicts as
  FusionAudio's and AudioBench's scripts do (a verdict they cannot read scores 0, counted ``unparsed``),
  ``audiobench-judge/rating-line`` re-asks them, then leaves them out (``unjudged``);
- ``air-bench-chat``: the judge scores the reference answer and the model's 1-10, in both orders by
  default (``air-bench-chat/both-orders``; ``reference-first``: AIR-Bench's order only), per category of
  ``cal_score.py`` (:func:`chat_category`). ``judge_score`` is FusionAudio's figure (the mean over verdicts
  x10); ``judge_score_1to10`` and ``reference_score`` AIR-Bench's: each order's mean per category, as
  ``cal_score.py`` gives it for that order's file, averaged over the orders; ``mixed`` is the mean of
  ``speech_and_sound`` and ``speech_and_music``, and ``overall`` the mean of speech, sound, music and mixed
  (its leaderboard). A verdict that fails drops only its order; an answer with no verdict is ``unjudged``.

A question without a prediction (none in the file, or the model failed) is counted (``missing``); it is
wrong and scores the lowest judge score, except in ``air-bench-chat``, where it is skipped as AIR-Bench's
script skips it. Predictions match questions by ``(audio_id, instruction)``. How an answer matches its
references is :mod:`.answers`.
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from fusion_datasets.chat.backends import BackendConfig
from fusion_datasets.errors import UserError
from fusion_datasets.eval.answers import choose_option, closed_correct, question_type
from fusion_datasets.eval.foundation import (
    STRICT,
    AlignConfig,
    OptionAligner,
    aligned_correct,
    aligned_protocol,
    foundation_group,
)
from fusion_datasets.eval.judge import JUDGE_PROTOCOLS, RUBRICS, AnswerJudge, JudgeConfig, judge_columns
from fusion_datasets.eval.predict import (
    Prediction,
    benchmark_name,
    load_benchmark,
    model_name,
    read_predictions,
    recorded_settings,
)
from fusion_datasets.eval.report import OVERALL, benchmark_extent, write_model_index, write_report
from fusion_datasets.files import write_text_atomically

logger = logging.getLogger(__name__)

KINDS = {"clotho-aqa": "closed", "air-bench-foundation": "choice", "audiocaps-qa": "audiobench",
         "wavcaps-qa": "audiobench", "air-bench-chat": "air-bench-chat"}
QA_KINDS = ("closed", "choice", "audiobench", "air-bench-chat")
JUDGE_RUBRICS = {"closed": "audiobench", "audiobench": "audiobench", "air-bench-chat": "air-bench-chat"}
CHAT_ORDERS = ("both", "reference-first")
ALIGN_MIX = "air-bench-mix"  # the aligner's temperatures, named in settings: AIR-Bench's, 1 or 2 per question
# AIR-Bench chat's task names and the categories cal_score.py averages them in
CHAT_CATEGORIES = {"speech_QA": "speech", "speech_dialogue_QA": "speech", "sound_QA": "sound",
                   "sound_generation_QA": "sound", "music_QA": "music", "music_generation_analysis_QA": "music",
                   "speech_and_sound_QA": "speech_and_sound", "speech_and_music_QA": "speech_and_music"}
CHAT_MIXED = ("speech_and_sound", "speech_and_music")  # its leaderboard's Mixed Audio: the mean of their means
CHAT_AVERAGE = ("speech", "sound", "music", "mixed")  # its leaderboard's Average: the mean of these
_CHAT_TASK = re.compile(r"(.+?_QA)(?:_|$)")


def _grouped(benchmark: str, metric: str, tasks: Sequence[str], values: Iterable[float | None],
             scale: float, protocol: str | None = None) -> list[dict[str, Any]]:
    """One row per task: ``scale`` x the mean of its values (``None``: left out of the mean)."""
    groups: dict[str, list[float]] = {}
    for task, value in zip(tasks, values):
        if value is not None:
            groups.setdefault(task, []).append(value)
    return [{"benchmark": benchmark, "task": task, "metric": metric, "value": scale * sum(group) / len(group),
             "n": len(group), "protocol": protocol} for task, group in groups.items()]


def _counted(benchmark: str, metric: str, tasks: Sequence[str], flags: Sequence[bool],
             protocol: str | None = None) -> list[dict[str, Any]]:
    """Per task and overall, how many questions are ``flags`` (a count of questions, not a percentage;
    ``n``: the questions)."""
    groups: dict[str, list[bool]] = {}
    for task, flag in zip(tasks, flags):
        groups.setdefault(task, []).append(flag)
    rows = [{"benchmark": benchmark, "task": task, "metric": metric, "value": sum(group), "n": len(group),
             "protocol": protocol, "counts": "questions"} for task, group in groups.items()]
    return rows + [{"benchmark": benchmark, "task": OVERALL, "metric": metric, "value": sum(flags),
                    "n": len(flags), "protocol": protocol, "counts": "questions"}]


def _choice_rows(benchmark: str, groups: Sequence[str], tasks: Sequence[str], correct: Sequence[bool | None],
                 counted: str, flags: Sequence[bool], protocol: str) -> list[dict[str, Any]]:
    """Accuracy per group (:func:`foundation_group`) and overall (given here: each protocol keeps its own), the
    count ``counted`` per group, and accuracy per task under ``<protocol>/per-task`` (where a task's group is
    not the task itself)."""
    per_task = [row for row in _grouped(benchmark, "accuracy", tasks, correct, 100.0, f"{protocol}/per-task")
                if row["task"] not in groups]
    return (_grouped(benchmark, "accuracy", groups, correct, 100.0, protocol)
            + _grouped(benchmark, "accuracy", [OVERALL] * len(tasks), correct, 100.0, protocol)
            + per_task + _counted(benchmark, counted, groups, flags, protocol))


def _mean_row(rows: Sequence[dict[str, Any]], task: str) -> dict[str, Any]:
    """A row of task ``task``: the unweighted mean of ``rows`` (one metric's), ``n`` their sum."""
    return {**rows[0], "task": task, "value": sum(row["value"] for row in rows) / len(rows),
            "n": sum(row["n"] for row in rows)}


def group_questions(columns: dict[str, list]) -> dict[str, list]:
    """One row per question: the rows sharing ``(audio_id, instruction)`` keep the first one's columns and
    gain ``answers``, all their answers in order.

    Example:
        >>> group_questions({"id": ["a", "b"], "audio_id": ["x.wav"] * 2, "instruction": ["Why?"] * 2,
        ...                  "answer": ["wind", "rain"]})
        {'id': ['a'], 'audio_id': ['x.wav'], 'instruction': ['Why?'], 'answer': ['wind'], 'answers': [['wind', 'rain']]}
    """
    answers: dict[tuple[str, str | None], list[str]] = {}
    first: dict[tuple[str, str | None], int] = {}
    for row, key in enumerate(zip(columns["audio_id"], columns["instruction"])):
        first.setdefault(key, row)
        answers.setdefault(key, []).append(columns["answer"][row])
    grouped = {name: [values[row] for row in first.values()] for name, values in columns.items()}
    return {**grouped, "answers": list(answers.values())}


def chat_category(*names: str | None) -> str | None:
    """AIR-Bench chat's category (``cal_score.py``'s ``speech``, ``sound``, ``music``, ``speech_and_sound``,
    ``speech_and_music``) of the first of ``names`` that
    is or starts with one of its task names: Chat_meta.json's ``task_name``, or the audio's folder
    ``<task_name>_<dataset_name>`` (all FusionAudio's JSON keeps of it).

    Example:
        >>> chat_category("Open-ended question", "speech_and_music_QA_musiccaps"), chat_category("clips")
        ('speech_and_music', None)
    """
    for name in names:
        match = _CHAT_TASK.match(name or "")
        if match and match[1] in CHAT_CATEGORIES:
            return CHAT_CATEGORIES[match[1]]
    return None


def match_predictions(columns: dict[str, list], predictions: Sequence[Prediction]
                      ) -> tuple[list[str | None], dict[str, int]]:
    """Each question's prediction, by ``(audio_id, instruction)``, and counts: ``unused`` (predictions that
    match no question), ``without_text`` (no answer: a failed row, no ``prediction``/``output`` field, or
    one that is not a string; their questions are missing) and ``conflicting`` (questions answered more
    than once, differently: the last answer is kept, as FusionAudio's scripts keep it). Each is warned."""
    by_key: dict[tuple[str, str | None], str] = {}
    conflicting: dict[tuple[str, str | None], None] = {}
    for prediction in predictions:
        key = (prediction.audio_id, prediction.instruction)
        if prediction.text is not None:
            if by_key.get(key, prediction.text) != prediction.text:
                conflicting[key] = None
            by_key[key] = prediction.text
    keys = list(zip(columns["audio_id"], columns["instruction"]))
    counts = {"unused": len({(one.audio_id, one.instruction) for one in predictions} - set(keys)),
              "without_text": sum(prediction.text is None for prediction in predictions),
              "conflicting": len(conflicting)}
    if counts["unused"]:
        logger.warning("%d predictions match no question of the benchmark (by audio_id and instruction)",
                       counts["unused"])
    if counts["without_text"]:
        logger.warning("%d predictions hold no answer (an error, no prediction or output field, or not a "
                       "string)", counts["without_text"])
    if conflicting:
        audio_id, instruction = next(iter(conflicting))
        logger.warning("%d questions have differing predictions (the first: audio_id %r, instruction %r); "
                       "the last prediction of each is scored", len(conflicting), audio_id, instruction)
    return [by_key.get(key) for key in keys], counts


def _tasks(columns: dict[str, list], default: str) -> list[str]:
    return [task or default for task in columns.get("task", [None] * len(columns["id"]))]


def _chat_tasks(columns: dict[str, list]) -> list[str]:
    """Each question's :func:`chat_category` from ``task_name``, ``task`` or its audio's folder."""
    size = len(columns["id"])
    names = zip(columns.get("task_name", [None] * size), columns.get("task", [None] * size),
                (PurePosixPath(audio_id.replace("\\", "/")).parent.name for audio_id in columns["audio_id"]))
    tasks = [chat_category(*row) or "uncategorized" for row in names]
    if "uncategorized" in tasks:
        logger.warning("%d questions have no AIR-Bench chat category (no task_name, and their audio is not in a "
                       "<task_name>_<dataset> folder): reported as uncategorized", tasks.count("uncategorized"))
    return tasks


def _judge_details(judged: dict[str, list], index: int, copies: int) -> dict[str, Any]:
    """What ``items.jsonl`` keeps of a question's verdicts (a list per order where it was judged twice)."""
    size = len(judged["judge_answer"]) // copies
    picked = [index + copy * size for copy in range(copies)]
    verdicts = [judged["judge_answer"][row] for row in picked]
    return {"judge_answer": verdicts[0] if copies == 1 else verdicts,
            "errors": [error for row in picked for error in judged["errors"][row]],
            "llm_usage": [entry for row in picked for entry in judged["llm_usage"][row] or []]}


def _audiobench_rows(benchmark: str, tasks: Sequence[str], columns: dict[str, list], missing: Sequence[bool],
                     judge: JudgeConfig, items: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    """The judge's 0-5 ratings against all of each question's answers: ``judge_score`` (x20) and the count
    of ``unparsed`` (read by the last token: they score 0) or ``unjudged`` verdicts (rating-line: left out)."""
    judged = judge_columns({"question": columns["question"], "answer": columns["answers"],
                            "prediction": columns["prediction"]}, judge)
    scores, low = judged["judge_score"], RUBRICS["audiobench"].low
    failed = [score is None and not gone for score, gone in zip(scores, missing)]
    last_token = judge.parse != "rating-line"
    values = [low if gone or (bad and last_token) else score for score, gone, bad in zip(scores, missing, failed)]
    rows = _grouped(benchmark, "judge_score", tasks, values, RUBRICS["audiobench"].report_scale, protocol)
    rows += _counted(benchmark, "unparsed" if last_token else "unjudged", tasks, failed, protocol)
    for index, item in enumerate(items):
        item.update(judge_score=scores[index], **_judge_details(judged, index, 1))
    return rows


def _chat_means(benchmark: str, metric: str, tasks: Sequence[str], orders: Sequence[Sequence[float | None]],
                scale: float, protocol: str, pooled: bool) -> list[dict[str, Any]]:
    """Per category, the verdicts' scores of ``orders`` (one list per order, ``None``: no verdict): ``pooled``,
    their mean over all verdicts (FusionAudio's, also ``overall``); else the mean over the orders of each
    order's mean, as ``cal_score.py`` gives it for that order's file, with ``mixed`` and ``overall`` as its
    leaderboard. ``n``: the questions with a verdict."""
    verdicts: dict[str, list[list[float]]] = {}
    judged: Counter = Counter()
    for index, task in enumerate(tasks):
        values = [order[index] for order in orders]
        judged[task] += any(value is not None for value in values)
        for slot, value in zip(verdicts.setdefault(task, [[] for _ in orders]), values):
            if value is not None:
                slot.append(value)

    def mean(per_order: list[list[float]]) -> float:
        if pooled:
            return sum(map(sum, per_order)) / sum(map(len, per_order))
        means = [sum(values) / len(values) for values in per_order if values]
        return sum(means) / len(means)

    rows = [{"benchmark": benchmark, "task": task, "metric": metric, "value": scale * mean(per_order),
             "n": judged[task], "protocol": protocol} for task, per_order in verdicts.items() if judged[task]]
    if not rows:
        return []
    if pooled:
        every = [[value for per_order in verdicts.values() for value in per_order[slot]] for slot in range(len(orders))]
        return [*rows, {**rows[0], "task": OVERALL, "value": scale * mean(every), "n": sum(judged.values())}]
    mixed = [row for row in rows if row["task"] in CHAT_MIXED]
    rows += [_mean_row(mixed, "mixed")] if mixed else []
    averaged = [row for row in rows if row["task"] in CHAT_AVERAGE] or rows  # uncategorized only: all of them
    return [*rows, _mean_row(averaged, OVERALL)]


def _chat_rows(benchmark: str, tasks: Sequence[str], columns: dict[str, list], missing: Sequence[bool],
               judge: JudgeConfig, items: list[dict[str, Any]], orders: str, protocol: str
               ) -> list[dict[str, Any]]:
    """AIR-Bench chat: each answer judged beside the question's (first) reference answer, in ``orders``; a
    verdict that fails leaves out only its order (``one_order_only`` counts those answers), an answer with
    none is ``unjudged``. A question's own score (``items.jsonl``) is the mean over its verdicts."""
    firsts = (True, False) if orders == "both" else (True,)
    size = len(missing)
    judged = judge_columns({
        "question": list(columns["question"]) * len(firsts),
        "answer": [answers[0] for answers in columns["answers"]] * len(firsts),
        "prediction": list(columns["prediction"]) * len(firsts),
        "meta_info": list(columns.get("meta_info", [None] * size)) * len(firsts),
        "reference_first": [first for first in firsts for _ in range(size)],
    }, judge)
    scores, references = ([judged[column][copy * size:(copy + 1) * size] for copy in range(len(firsts))]
                          for column in ("judge_score", "judge_reference_score"))
    scale = RUBRICS["air-bench-chat"].report_scale
    rows = _chat_means(benchmark, "judge_score", tasks, scores, scale, protocol, pooled=True)
    rows += _chat_means(benchmark, "judge_score_1to10", tasks, scores, 1.0, protocol, pooled=False)
    rows += _chat_means(benchmark, "reference_score", tasks, references, 1.0, protocol, pooled=False)
    verdicts = [sum(order[index] is not None for order in scores) for index in range(size)]
    rows += _counted(benchmark, "unjudged", tasks, [not count and not gone for count, gone in zip(verdicts, missing)],
                     protocol)
    if len(firsts) > 1:
        rows += _counted(benchmark, "one_order_only", tasks, [count == 1 for count in verdicts], protocol)

    def own(orders: list[list[float | None]], index: int) -> float | None:
        values = [order[index] for order in orders if order[index] is not None]
        return sum(values) / len(values) if values else None

    for index, item in enumerate(items):
        item.update(judge_score=own(scores, index), judge_reference_score=own(references, index),
                    **_judge_details(judged, index, len(firsts)))
    return rows


def score_qa(benchmark: str, kind: str, columns: dict[str, list], judge: JudgeConfig | None = None,
             chat_orders: str = "both", align: AlignConfig | None = None, align_mix: bool = True
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Report rows and per-question results of ``columns``: a benchmark's questions (:func:`group_questions`)
    with ``prediction``; ``align``: also AIR-Bench Foundation's aligned scoring, at AIR-Bench's mix of
    temperatures (``align_mix``) or at ``align.temperature``."""
    predictions, answers = columns["prediction"], columns["answers"]
    missing = [not (prediction or "").strip() for prediction in predictions]
    items = [{"id": row_id, "prediction": prediction, "answers": references}
             for row_id, prediction, references in zip(columns["id"], predictions, answers)]
    if kind in ("audiobench", "air-bench-chat") and judge is None:
        raise ValueError(f"{benchmark} ({kind}) is scored by an LLM judge: give a judge model")
    protocol = None
    if kind == "closed":
        protocol = "clotho-aqa/grouped"
        tasks = [Counter(map(question_type, references)).most_common(1)[0][0] for references in answers]
        correct = [closed_correct(prediction, references) for prediction, references in zip(predictions, answers)]
        rows = _grouped(benchmark, "accuracy", tasks, correct, 100.0, protocol)
        for item, value in zip(items, correct):
            item["correct"] = value
        if judge is not None:  # the open score, as FusionAudio's Clotho-AQA evaluation gives it
            rows += _audiobench_rows(benchmark, tasks, columns, missing, judge, items,
                                     f"{protocol}+{JUDGE_PROTOCOLS[judge.parse]}")
    elif kind == "choice":
        protocol = STRICT
        names = _tasks(columns, "multiple choice")
        tasks = [foundation_group(task, dataset)
                 for task, dataset in zip(names, columns.get("dataset", [None] * len(names)))]
        chosen = [choose_option(prediction, options)
                  for prediction, options in zip(predictions, columns["options"])]
        letters = [None if index is None else string.ascii_uppercase[index] for index in chosen]
        correct = [letter == expected for letter, expected in zip(letters, columns["answer_letter"])]
        rows = _choice_rows(benchmark, tasks, names, correct, "unmappable",
                            [index is None and not gone for index, gone in zip(chosen, missing)], STRICT)
        for item, letter, value in zip(items, letters, correct):
            item.update(chosen=letter, correct=value)
        if align is not None:  # AIR-Bench's own scoring comes first: its leaderboard's and FusionAudio's figure
            aligned, replies = aligned_correct(columns, align, align_mix)
            rows = _choice_rows(benchmark, tasks, names, aligned, "unaligned",
                                [value is None and not gone for value, gone in zip(aligned, missing)],
                                aligned_protocol(None if align_mix else align.temperature)) + rows
            for index, item in enumerate(items):
                item.update({name: replies[name][index]
                             for name in ("aligned_letter", "align_answer", "align_temperature", "errors")})
    elif kind == "audiobench" and judge is not None:
        protocol = JUDGE_PROTOCOLS[judge.parse]
        tasks = _tasks(columns, "open-ended")
        rows = _audiobench_rows(benchmark, tasks, columns, missing, judge, items, protocol)
    elif judge is not None:
        protocol = f"air-bench-chat/{'both-orders' if chat_orders == 'both' else chat_orders}"
        tasks = _chat_tasks(columns)
        rows = _chat_rows(benchmark, tasks, columns, missing, judge, items, chat_orders, protocol)
    rows += _counted(benchmark, "missing", tasks, missing, protocol)
    return rows, items


def _nothing_to_score(predictions: str | Path, benchmark: str, questions: int, read: int,
                      counts: dict[str, int], skipped: Counter) -> UserError:
    found = (f"{read} predictions read, {counts['without_text']} without an answer, {counts['unused']} matching "
             f"no question, {sum(skipped.values())} lines unusable")
    return UserError(f"{predictions}: none of the {questions} questions of {benchmark} has an answer to score "
                     f"({found}). Predictions match questions by audio_id and instruction, and each needs a string "
                     "prediction (or output): check that the file holds this benchmark's answers")


def run_qa_eval(
    predictions: str | Path,
    benchmark: str | Path,
    output: str | Path,
    *,
    model: str | None = None,
    kind: str | None = None,
    judge: BackendConfig | None = None,
    judge_parse: str = "fusionaudio",
    chat_orders: str = "both",
    max_reasks: int = 2,
    judge_max_new_tokens: int = 256,
    align_seed: int | None = 0,
    align_temperature: float | None = None,
    split: str = "test",
    config: str | None = None,
    model_index: str | Path | None = None,
) -> dict[str, Any]:
    """``fusion-datasets eval qa``: score ``predictions`` on ``benchmark``; write the report into ``output``.

    Beside ``report.json`` and ``report.md``: ``items.jsonl`` (each question's prediction, answers, verdict
    and the judge's raw answer) and ``details.json`` (kind, counts, the judge's model and prompt version).
    Prediction lines that cannot be used are logged with their ``file:line`` and counted there; a file that
    answers no question is a :class:`UserError`. ``model`` names the model in the report (default: the
    predictions file's name). ``judge_parse`` (audiobench verdicts) and ``chat_orders`` choose the protocol
    (see the module docstring). With a judge, AIR-Bench Foundation is also scored as AIR-Bench scores it:
    the judge aligns each answer to an option, sampling with ``align_seed`` at AIR-Bench's mix of
    temperatures, or at ``align_temperature`` when one is given (named in the protocol). A
    reasoning judge needs a ``judge_max_new_tokens`` that leaves room for its trace.
    """
    name = benchmark_name(benchmark)
    kind = kind or KINDS.get(name)
    if kind not in QA_KINDS:
        raise ValueError(f"the kind of benchmark {name!r} is unknown: give kind ({', '.join(QA_KINDS)})")
    if chat_orders not in CHAT_ORDERS:
        raise ValueError(f"chat_orders must be one of {', '.join(CHAT_ORDERS)}, got {chat_orders!r}")
    judge_config = None
    if judge is not None and kind in JUDGE_RUBRICS:
        judge_config = JudgeConfig(backend=judge, rubric=JUDGE_RUBRICS[kind], parse=judge_parse,
                                   max_reasks=max_reasks, max_new_tokens=judge_max_new_tokens)
    align = None
    if judge is not None and kind == "choice":
        align = AlignConfig(backend=judge, seed=align_seed, max_new_tokens=judge_max_new_tokens,
                            **({} if align_temperature is None else {"temperature": align_temperature}))
    table = load_benchmark(benchmark, split, config).remove_columns("audio")
    columns = group_questions(table[:])
    answers, skipped = read_predictions(predictions)
    columns["prediction"], counts = match_predictions(columns, answers)
    missing = sum(not (prediction or "").strip() for prediction in columns["prediction"])
    if missing == len(columns["prediction"]):
        raise _nothing_to_score(predictions, name, missing, len(answers), counts, skipped)
    if missing:
        logger.warning("%d of %d questions have no answer: counted as missing, and %s", missing,
                       len(columns["prediction"]), "skipped" if kind == "air-bench-chat" else "scored wrong")
    rows, items = score_qa(name, kind, columns, judge_config, chat_orders, align, align_temperature is None)
    folder = Path(output)
    settings: dict[str, Any] = {"kind": kind, "split": split}
    if judge is not None:
        settings.update(judge_model=judge.model, judge_parse=judge_parse, chat_orders=chat_orders,
                        max_reasks=max_reasks, judge_max_new_tokens=judge_max_new_tokens)
        if align is not None:
            settings.update(align_seed=align_seed, align_temperature=ALIGN_MIX if align_temperature is None
                            else align_temperature)
    if recorded_settings(predictions):
        settings["predict"] = recorded_settings(predictions)
    extent = benchmark_extent(benchmark, len(set(table["audio_id"])))
    report = write_report(folder, model_name(predictions, model), rows, settings=settings, extents={name: extent})
    with open(folder / "items.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    details = {"benchmark": name, "kind": kind, "predictions": str(predictions), "rows": table.num_rows,
               "questions": len(items), "missing": missing, "skipped_predictions": dict(skipped),
               "unused_predictions": counts["unused"], "predictions_without_answer": counts["without_text"],
               "conflicting_predictions": counts["conflicting"],
               "judge": (judge_config and AnswerJudge(judge_config).provenance_entry())
               or (align and OptionAligner(align).provenance_entry())}
    if align is not None:
        details["align_temperature"] = settings["align_temperature"]
    write_text_atomically(folder / "details.json", json.dumps(details, indent=2) + "\n")
    if model_index:
        write_model_index(model_index, report, "audio-text-to-text")
    return report
