"""``eval captions``: a captioner's captions against every reference caption of a captioning benchmark.

The benchmark is a built AudioCaps or Clotho (``fusion-datasets build audiocaps|clotho``: one row per clip,
``captions`` holding its references, 5 per clip) or any dataset with ``id`` and ``captions``. Predictions
are ``eval predict``'s JSONL, the FusionAudio format, or any JSONL of ``{"id", "caption"}``, matched to
clips by id (or by the file name of ``audio_id``). A clip without a prediction is scored as an empty
caption (``missing``; ``coverage`` is the percentage of clips with one). Figures are in the field's scale
(0-1; CIDEr-D 0-10) with 95% bootstrap intervals over clips; :mod:`.score` says how each is computed.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from fusion_datasets.errors import UserError
from fusion_datasets.eval.captions.score import CaptionOptions, CaptionScores, bootstrap_intervals, score_captions
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


def match_captions(ids: list[str], predictions: list[Prediction]) -> tuple[list[str | None], Counter]:
    """Each clip's caption (``None``: none given), and the counts ``unused`` (predictions of no clip),
    ``without_text`` and ``conflicting`` (clips captioned more than once, differently: the last is kept)."""
    known = set(ids)
    by_id: dict[str, str] = {}
    counts: Counter = Counter()
    for prediction in predictions:
        key = prediction.audio_id
        if key not in known:
            key = PurePosixPath(key.replace("\\", "/")).stem
        if key not in known:
            counts["unused"] += 1
        elif prediction.text is None:
            counts["without_text"] += 1
        else:
            counts["conflicting"] += by_id.get(key, prediction.text) != prediction.text
            by_id[key] = prediction.text
    return [by_id.get(clip) for clip in ids], counts


def clap_similarity(table: Any, captions: list[str], model: str, kind: str, device: str | None,
                    batch_size: int) -> tuple[list[float], int]:
    """Each decodable clip's cosine with its caption under the CLAP ``model``, and how many clips could not
    be decoded (left out of the mean)."""
    from fusion_datasets.clap.embed import clap_scores, load_clap
    from fusion_datasets.media import MediaBatch

    clap = load_clap(model, kind, device=device, batch_size=batch_size)
    values, undecodable = [], 0
    for start in range(0, table.num_rows, batch_size):
        clips = MediaBatch(table.select(range(start, min(start + batch_size, table.num_rows)))[:]).audio(
            clap.sampling_rate)
        decoded = [row for row, clip in enumerate(clips) if clip is not None]
        undecodable += len(clips) - len(decoded)
        if decoded:
            values += [float(value) for value in clap_scores(
                clap, [clips[row][0] for row in decoded], [captions[start + row] for row in decoded])]
    return values, undecodable


def _rows(name: str, scores: CaptionScores, intervals: dict[str, tuple[float, float]], clips: int,
          missing: int, clap_clips: int) -> list[dict[str, Any]]:
    rows = []
    for metric, value in scores.values().items():
        row = {"benchmark": name, "task": OVERALL, "metric": metric, "value": value,
               "n": clap_clips if metric == "CLAP-sim" else clips, "protocol": scores.protocols[metric]}
        if metric in intervals:
            row["ci95"] = list(intervals[metric])
        rows.append(row)
    coverage = 100.0 * (clips - missing) / clips
    rows.append({"benchmark": name, "task": OVERALL, "metric": "coverage", "value": coverage, "n": clips,
                 "protocol": "captions/missing-as-empty"})
    rows.append({"benchmark": name, "task": OVERALL, "metric": "missing", "value": missing, "n": clips,
                 "counts": "clips", "protocol": "captions/missing-as-empty"})
    rows.append({"benchmark": name, "task": OVERALL, "metric": "vocabulary", "value": scores.vocabulary,
                 "n": clips, "counts": "words", "protocol": f"distinct-words/{scores.tokenizer}"})
    return rows


def run_captions_eval(
    predictions: str | Path,
    benchmark: str | Path,
    output: str | Path,
    *,
    model: str | None = None,
    options: CaptionOptions | None = None,
    clap_model: str | None = None,
    clap_kind: str = "auto",
    n_resamples: int = 1000,
    seed: int = 0,
    split: str = "test",
    config: str | None = None,
    model_index: str | Path | None = None,
) -> dict[str, Any]:
    """``fusion-datasets eval captions``: score ``predictions`` on ``benchmark``; write the report to ``output``.

    Beside ``report.json`` / ``report.md`` (metrics that could not run are listed under ``left_out`` with
    their reason): ``items.jsonl`` (each clip's caption, tokens and scores) and ``details.json`` (counts,
    tokenizer, models). ``clap_model``: also CLAP-sim, the mean cosine of each clip with its caption.
    """
    options = options or CaptionOptions()
    name = benchmark_name(benchmark)
    table = load_benchmark(benchmark, split, config)
    if "captions" not in table.column_names:
        raise UserError(f"{benchmark} has no `captions` column ({', '.join(table.column_names)}): eval captions "
                        "reads a captioning benchmark, as `fusion-datasets build audiocaps|clotho` makes it")
    references = [[text for text in refs or [] if isinstance(text, str) and text.strip()] for refs in table["captions"]]
    kept = [row for row, refs in enumerate(references) if refs]
    if len(kept) < table.num_rows:
        logger.warning("%s: %d clips have no reference caption: left out", name, table.num_rows - len(kept))
    table = table.select(kept)
    references = [references[row] for row in kept]
    found, skipped = read_predictions(predictions, keys=("audio_id", "id"))
    captions, counts = match_captions(list(table["id"]), found)
    missing = sum(not (caption or "").strip() for caption in captions)
    if not table.num_rows or missing == table.num_rows:
        raise UserError(f"{predictions}: none of the {table.num_rows} clips of {name} has a caption to score "
                        f"({len(found)} predictions read, {counts['unused']} matching no clip id, "
                        f"{sum(skipped.values())} lines unusable). Predictions match clips by id (or audio_id): "
                        "check that the file holds this benchmark's captions")
    if missing:
        logger.warning("%d of %d clips have no caption: scored as empty captions", missing, table.num_rows)
    texts = [(caption or "").strip() for caption in captions]
    scores = score_captions(texts, references, options)
    clap_clips, undecodable = 0, 0
    if clap_model is None or "clap" in options.skip:
        scores.leave_out(["CLAP-sim"], "skipped (--skip clap)" if clap_model else "no CLAP model given (--clap-model)")
    else:
        try:
            values, undecodable = clap_similarity(table, texts, clap_model, clap_kind, options.device,
                                                  options.batch_size)
        except (UserError, OSError, ValueError) as error:
            scores.leave_out(["CLAP-sim"], f"the CLAP model {clap_model!r} cannot be loaded: {error}")
        else:
            if values:
                scores.per_clip["CLAP-sim"], clap_clips = values, len(values)
                scores.protocols["CLAP-sim"] = f"clap-cosine/{clap_model}"
            else:
                scores.leave_out(["CLAP-sim"], "no clip's audio could be decoded")
    intervals = bootstrap_intervals(scores, n_resamples, seed) if n_resamples else {}
    rows = _rows(name, scores, intervals, table.num_rows, missing, clap_clips)
    folder = Path(output)
    settings: dict[str, Any] = {"split": split, "sentence_model": options.sentence_model,
                                "error_detector": options.error_detector, "corenlp": options.corenlp,
                                "clap_model": clap_model, "skip": sorted(options.skip),
                                "n_resamples": n_resamples, "seed": seed}
    if recorded_settings(predictions):
        settings["predict"] = recorded_settings(predictions)
    report = write_report(folder, model_name(predictions, model), rows, left_out=scores.left_out, settings=settings,
                          extents={name: benchmark_extent(benchmark, table.num_rows)})
    per_clip = {metric: values for metric, values in scores.per_clip.items() if metric != "CLAP-sim"}
    with open(folder / "items.jsonl", "w", encoding="utf-8") as handle:
        for row, clip in enumerate(table["id"]):
            item = {"id": clip, "prediction": captions[row], "tokens": scores.tokens[row],
                    "references": references[row], **{metric: values[row] for metric, values in per_clip.items()}}
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    details = {"benchmark": name, "predictions": str(predictions), "clips": table.num_rows, "missing": missing,
               "skipped_predictions": dict(skipped), "unused_predictions": counts["unused"],
               "predictions_without_caption": counts["without_text"],
               "conflicting_predictions": counts["conflicting"], "undecodable_audio": undecodable,
               "tokenizer": scores.tokenizer, "left_out": scores.left_out,
               "models": {"sentence_model": options.sentence_model, "error_detector": options.error_detector,
                          "clap_model": clap_model}}
    write_text_atomically(folder / "details.json", json.dumps(details, indent=2) + "\n")
    if model_index:
        write_model_index(model_index, report, "audio-text-to-text", skip_metrics=["coverage"])
    return report
