"""Retrieval evaluation of a CLAP model on a dataset of clips with captions, written as a report.

A retrieval dataset has one row per clip: ``audio`` and ``captions`` (a list of strings; a single
string counts as one caption), like AudioCaps test and Clotho evaluation with 5 captions per clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fusion_datasets.clap.embed import ClapEmbedder, load_clap
from fusion_datasets.eval.report import write_report
from fusion_datasets.eval.retrieval import bootstrap_intervals, retrieval_ranks, summarize_ranks
from fusion_datasets.media import MediaBatch


def _captions(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else list(value or [])
    return [caption for caption in values if isinstance(caption, str) and caption.strip()]


def evaluate_retrieval(
    clap: ClapEmbedder,
    dataset: Any,
    audio_column: str = "audio",
    captions_column: str = "captions",
    batch_size: int = 32,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Embed every clip and caption of ``dataset`` with ``clap`` and compute the retrieval metrics.

    Returns ``{"metrics", "confidence_intervals" (95% bootstrap, none when n_resamples is 0),
    "n_audios", "n_captions"}``. A clip whose audio cannot be decoded stops the evaluation: a
    benchmark missing clips would not be comparable.

    Example:
        >>> result = evaluate_retrieval(load_clap("laion/clap-htsat-unfused"), audiocaps_test)  # doctest: +SKIP
        >>> result["metrics"]["t2a_R@1"]  # doctest: +SKIP
    """
    missing = [column for column in (audio_column, captions_column) if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"the retrieval dataset lacks {', '.join(missing)}; it has {', '.join(dataset.column_names)}"
        )
    audio_parts, texts, text_to_audio = [], [], []
    offset = 0
    for batch in dataset.iter(batch_size=batch_size):
        media = MediaBatch(batch, audio_column)
        clips = media.audio(clap.sampling_rate)
        failed = [row for row, clip in enumerate(clips) if clip is None]
        if failed:
            row = failed[0]
            raise ValueError(
                f"{len(failed)} clip(s) of the retrieval dataset cannot be decoded, first row {offset + row} "
                f"(id {media.column('id')[row]!r}): {media.errors[row][-1]['message']}"
            )
        for row, captions in enumerate(media.column(captions_column)):
            for caption in _captions(captions):
                texts.append(caption)
                text_to_audio.append(offset + row)
        audio_parts.append(clap.embed_audio([clip[0] for clip in clips]))
        offset += media.size
    if not offset:
        raise ValueError("the retrieval dataset has no rows")
    ranks = retrieval_ranks(
        clap.embed_text(texts), np.concatenate(audio_parts), np.asarray(text_to_audio, dtype=np.int64)
    )
    intervals = bootstrap_intervals(ranks, n_resamples, seed) if n_resamples else {}
    return {
        "metrics": summarize_ranks(ranks),
        "confidence_intervals": {key: list(interval) for key, interval in intervals.items()},
        "n_audios": ranks.n_audios,
        "n_captions": len(texts),
    }


def benchmark_name(dataset: str | Path) -> str:
    """A benchmark's name in reports: the last part of its folder or Hub id.

    Example:
        >>> benchmark_name("data/audiocaps-test/"), benchmark_name("org/clotho")
        ('audiocaps-test', 'clotho')
    """
    return Path(str(dataset).rstrip("/")).name


def retrieval_report_rows(benchmark: str, evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Report rows of an :func:`evaluate_retrieval` result: tasks ``t2a``, ``a2t`` and ``overall``.

    ``n`` is the number of queries (captions for T2A, audios for A2T); ``overall`` is the mean of the
    two directions, as LAION-CLAP selects checkpoints, with ``n`` the number of audios.
    """
    sizes = {"t2a": evaluation["n_captions"], "a2t": evaluation["n_audios"]}
    intervals = evaluation.get("confidence_intervals", {})
    rows, by_metric = [], {}
    for key, value in evaluation["metrics"].items():
        task, metric = key.split("_", 1)
        row = {"benchmark": benchmark, "task": task, "metric": metric, "value": value, "n": sizes[task]}
        if key in intervals:
            row["ci95"] = list(intervals[key])
        rows.append(row)
        by_metric.setdefault(metric, []).append(value)
    rows += [
        {
            "benchmark": benchmark,
            "task": "overall",
            "metric": metric,
            "value": float(np.mean(values)),
            "n": sizes["a2t"],
        }
        for metric, values in by_metric.items()
    ]
    return rows


def run_retrieval_eval(
    model: str,
    dataset: str,
    output: str | Path,
    *,
    split: str = "test",
    config: str | None = None,
    benchmark: str | None = None,
    kind: str = "auto",
    text_encoder: str = "roberta-base",
    device: str | None = None,
    batch_size: int = 32,
    audio_column: str = "audio",
    captions_column: str = "captions",
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``fusion-datasets eval retrieval``: evaluate ``model`` on ``dataset``, write ``report.json`` and ``.md``.

    ``dataset`` is a folder or Hub id that ``datasets.load_dataset(dataset, config, split=split)`` reads;
    the benchmark is named after its last path part unless ``benchmark`` is given.

    Example:
        >>> run_retrieval_eval("laion/clap-htsat-unfused", "data/audiocaps", "reports/audiocaps")  # doctest: +SKIP
    """
    import datasets

    table = datasets.load_dataset(str(dataset), config, split=split)
    clap = load_clap(model, kind, device=device, batch_size=batch_size, text_encoder=text_encoder)
    evaluation = evaluate_retrieval(clap, table, audio_column, captions_column, batch_size, n_resamples, seed)
    name = benchmark or benchmark_name(dataset)
    return write_report(output, model, retrieval_report_rows(name, evaluation))
