"""``eval predict``: an audio LM answers a benchmark's instructions; its answers as resumable JSONL.

Each line of the output is ``{"id", "audio_id", "instruction", "prediction"}`` (and ``"error"`` where the
row failed: a clip that cannot be decoded, a failed generation). A rerun skips the rows already answered
and answers again those that failed. :func:`read_predictions` reads that file back, and the FusionAudio
format too (the benchmark's JSON list with ``output`` replaced by the model's answer).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_datasets.chat.backends import BackendConfig
from fusion_datasets.errors import UserError
from fusion_datasets.experts.audio_llm import AudioLLMConfig, AudioLLMExpert
from fusion_datasets.files import write_text_atomically
from fusion_datasets.loading import load_undecoded
from fusion_datasets.media import MediaBatch
from fusion_datasets.prompts import read_prompt

logger = logging.getLogger(__name__)

INSTRUCTION = "{instruction}"
# rows of a captioning benchmark (AudioCaps, Clotho: captions, no instruction): Qwen2-Audio's captioning prompt
CAPTION_INSTRUCTION = "Generate the caption in English:"
TEXT_KEYS = ("prediction", "output", "caption")  # where a predictions file holds the model's text


@dataclass(frozen=True)
class PredictConfig(AudioLLMConfig):
    """``prompt`` is a template: each row's instruction replaces ``{instruction}``. Rows without an
    instruction get ``default_instruction``: the paper's sound prompt (classification benchmarks), or
    ``run_predict``'s ``caption_instruction`` on a captioning benchmark."""

    prompt: str = INSTRUCTION
    default_instruction: str = read_prompt("sound_v1")

    def __post_init__(self) -> None:
        super().__post_init__()
        if INSTRUCTION not in self.prompt:
            raise ValueError(f"prompt must contain {INSTRUCTION!r}, got {self.prompt!r}")


class AudioLLMAnswerer(AudioLLMExpert[PredictConfig]):
    """Writes ``prediction``: the audio LM's greedy answer to each row's ``instruction`` about its ``audio``.
    """

    stage = "predict"
    config_class = PredictConfig

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {"prediction": Value("string")}

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        prompts = [self.config.prompt.replace(INSTRUCTION, instruction or self.config.default_instruction)
                   for instruction in media.column("instruction")]
        return {"prediction": self.describe(media, rank, range(media.size), prompts)}


def load_benchmark(benchmark: str | Path, split: str = "test", config: str | None = None) -> Any:
    """A built benchmark (folder or Hub id) with its audio as ``{"bytes", "path"}``, decoded when used."""
    return load_undecoded(str(benchmark), config, split)


def benchmark_name(benchmark: str | Path) -> str:
    """The builder that made ``benchmark`` (its ``stats.json``), else the folder's or Hub id's last part."""
    stats = Path(benchmark) / "stats.json"
    if stats.is_file():
        name = json.loads(stats.read_text()).get("name")
        if isinstance(name, str) and name:
            return name
    return Path(str(benchmark).rstrip("/")).name


def _resume(output: Path) -> set[str]:
    """Ids answered in ``output``; rewrites it without its failed rows and any cut-off last line."""
    if not output.exists():
        return set()
    kept, done, dropped = [], set(), Counter()
    for number, line in enumerate(output.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s:%d is not JSON (a run cut off mid-line?); answered again", output, number)
            dropped["unreadable"] += 1
            continue
        if record.get("error") or not isinstance(record.get("id"), str):
            dropped["failed"] += 1
            continue
        if record["id"] not in done:
            done.add(record["id"])
            kept.append(line)
    if dropped:
        logger.info("%s: %d rows kept, answering again %s", output, len(kept), dict(dropped))
        write_text_atomically(output, "".join(f"{line}\n" for line in kept))
    return done


def run_predict(
    model: str,
    benchmark: str | Path,
    output: str | Path,
    *,
    split: str = "test",
    config: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    prompt: str = INSTRUCTION,
    device: str | None = None,
    dtype: str = "auto",
    backend: BackendConfig | None = None,
    max_seconds: float = 30.0,
    caption_instruction: str = CAPTION_INSTRUCTION,
) -> dict[str, int]:
    """``fusion-datasets eval predict``: answer every question of ``benchmark`` not yet in ``output`` (JSONL),
    once per question (:func:`first_rows`).

    Rows are answered ``batch_size`` at a time (served: ``backend``, four times its ``max_concurrency``,
    that many requests in flight) and each batch is appended (and flushed) at once, so an interrupted run
    loses at most one batch. Each clip is cut to ``max_seconds`` (and in process to what its model's family
    takes, ``experts/audio_lm.py``). A captioning benchmark (``captions``, no ``instruction``: AudioCaps,
    Clotho) is asked ``caption_instruction``, for ``eval captions``. The settings are recorded beside the
    output (:func:`settings_file`); a rerun with other settings is refused, not mixed in. Returns the counts
    of questions ``answered``, ``failed`` and ``skipped``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    table = load_benchmark(benchmark, split, config)
    captioning = "captions" in table.column_names and "instruction" not in table.column_names
    settings = {"model": model, "benchmark": benchmark_name(benchmark), "split": split, "config": config,
                "prompt": prompt, "max_new_tokens": max_new_tokens, "max_seconds": max_seconds, "dtype": dtype,
                "served": backend is not None}
    if captioning:
        settings["caption_instruction"] = caption_instruction
    _claim_predictions(output, settings)
    done = _resume(output)
    defaults = {"default_instruction": caption_instruction} if captioning else {}
    answerer = AudioLLMAnswerer(model=model, prompt=prompt, max_new_tokens=max_new_tokens, device=device,
                                dtype=dtype, backend=backend, max_seconds=max_seconds, **defaults)
    batch_size = answerer.batch_size if backend is not None else batch_size
    questions, ids = first_rows(table), table["id"]
    todo = [row for row in questions if ids[row] not in done]
    counts = {"answered": 0, "failed": 0, "skipped": len(questions) - len(todo)}
    with output.open("a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            batch = table.select(todo[start:start + batch_size])[:]
            answers = answerer(batch)
            ids = batch["id"]
            keys = zip(ids, batch.get("audio_id", ids), batch.get("instruction", [None] * len(ids)))
            for (row_id, audio_id, instruction), prediction, errors in zip(
                    keys, answers["prediction"], answers["errors"]):
                record = {"id": row_id, "audio_id": audio_id, "instruction": instruction,
                          "prediction": prediction}
                if errors or prediction is None:
                    messages = (f"{error['stage']}: {error['message']}" for error in errors)
                    record["error"] = "; ".join(messages) or "no answer"
                counts["failed" if "error" in record else "answered"] += 1
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            logger.info("%s: %d of %d questions done", output, start + len(ids), len(todo))
    return counts


def settings_file(predictions: str | Path) -> Path:
    """Where ``eval predict`` records the settings its predictions were made with (beside the JSONL)."""
    predictions = Path(predictions)
    return predictions.with_name(predictions.name + ".settings.json")


def recorded_settings(predictions: str | Path) -> dict[str, Any]:
    """The settings ``eval predict`` recorded for ``predictions``; empty for a file it did not make."""
    path = settings_file(predictions)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _claim_predictions(output: Path, settings: dict[str, Any]) -> None:
    """Record ``settings`` for ``output``; predictions made with other settings are not resumed (refused)."""
    before = recorded_settings(output)
    changed = {key: (before[key], value) for key, value in settings.items() if key in before and before[key] != value}
    if output.exists() and changed:
        described = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
        raise UserError(f"{output} holds predictions made with other settings ({described}): give another "
                        f"--output, or remove {output} to start over")
    write_text_atomically(settings_file(output), json.dumps(settings, indent=1) + "\n")


def model_name(predictions: str | Path, given: str | None = None) -> str:
    """The model's name in a report: ``given`` (``--model-name``), else the model ``eval predict`` recorded for
    ``predictions``, else the file's name."""
    return given or recorded_settings(predictions).get("model") or Path(predictions).stem


def first_rows(table: Any) -> list[int]:
    """The first row of each question: rows sharing ``(audio_id, instruction)`` (Clotho-AQA's three annotators of
    one question) are asked once; ``eval qa`` scores every row of a question with that one answer."""
    ids = table["id"]
    audio_ids = table["audio_id"] if "audio_id" in table.column_names else ids
    instructions = table["instruction"] if "instruction" in table.column_names else [None] * len(ids)
    first: dict[tuple[str, str | None], int] = {}
    for row, key in enumerate(zip(audio_ids, instructions)):
        first.setdefault(key, row)
    return sorted(first.values())


@dataclass(frozen=True)
class Prediction:
    """One prediction read back: the row it answers and its text (``None``: the model gave none)."""

    audio_id: str
    instruction: str | None
    text: str | None


def _prediction(record: Any, keys: tuple[str, ...] = ("audio_id",)) -> Prediction | None:
    """A record's prediction, by the first of ``keys`` it has (``audio_id``)."""
    if not isinstance(record, dict):
        return None
    audio_id = next((record[key] for key in keys if key in record), None)
    if not isinstance(audio_id, str):
        return None
    text = next((record[key] for key in TEXT_KEYS if key in record), None)
    instruction = record.get("instruction")
    return Prediction(audio_id, instruction if isinstance(instruction, str) else None,
                      None if record.get("error") or not isinstance(text, str) else text)


def read_predictions(path: str | Path, keys: tuple[str, ...] = ("audio_id",)) -> tuple[list[Prediction], Counter]:
    """The predictions of ``path``: our JSONL, or a FusionAudio-format JSON list (``output`` = the answer).

    A JSONL line names its clip by the first of ``keys`` it holds (``("audio_id", "id")``: also a captioner's
    ``{"id", "caption"}``).

    A line or row that cannot be used is logged with its ``file:line``, skipped and counted (the Counter).
    """
    from fusion_datasets.builders.readers import read_json_rows
    from fusion_datasets.builders.report import BuildReport

    path = Path(path)
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if text.lstrip().startswith("["):  # rows without a string audio_id and output are skipped there
        report = BuildReport(str(path))
        return [_prediction(item) for _, item in read_json_rows(path, report)], report.skipped
    predictions, skipped = [], Counter()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row, reason = _prediction(json.loads(line), keys), f"not an object with a string {' or '.join(keys)}"
        except json.JSONDecodeError as error:
            row, reason = None, f"not JSON ({error.msg})"
        if row is None:
            logger.warning("%s:%d: prediction skipped, %s", path, number, reason)
            skipped["bad_prediction_line"] += 1
        else:
            predictions.append(row)
    return predictions, skipped
