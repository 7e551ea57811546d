"""Retrieval evaluation of a CLAP model on a dataset of clips with captions, written as a report.

A retrieval dataset has one row per clip: ``audio`` and ``captions`` (a list of strings; a single
string counts as one caption), like AudioCaps test and Clotho evaluation with 5 captions per clip.
Each distinct caption string and each distinct decoded audio is embedded once, so copies (AudioCaps test
shares 67 caption strings among 138 clips) get the very same embedding, whatever batch they fall in, and
tie exactly (see :mod:`fusion_datasets.eval.retrieval`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from fusion_datasets.clap.base import ClapEmbedder
from fusion_datasets.clap.embed import load_clap
from fusion_datasets.eval.report import benchmark_extent, write_report
from fusion_datasets.eval.retrieval import (
    TIES,
    bootstrap_intervals,
    check_map_protocol,
    position_ranks,
    retrieval_protocols,
    retrieval_ranks,
    summarize_ranks,
)
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
    map_protocol: str = "sorted",
) -> dict[str, Any]:
    """Embed every clip and caption of ``dataset`` with ``clap`` and compute the retrieval metrics.

    Returns ``{"metrics", "confidence_intervals" (95% bootstrap, none when n_resamples is 0),
    "position_metrics" (exact ties broken by row position, as the reference code breaks them), "map_protocol",
    "n_audios", "n_captions", "n_queries" ({"t2a": captions, "a2t": clips with captions})}``. A clip whose
    audio cannot be decoded stops the evaluation: a benchmark missing clips would not be comparable.

    Example:
        >>> import datasets
        >>> from fusion_datasets.synthetic import music, noise, write_audio
        >>> clips = [str(write_audio("noise.wav", noise(1.0, 48000), 48000)),
        ...          str(write_audio("music.wav", music(1.0, 48000), 48000))]
        >>> table = datasets.Dataset.from_dict({"audio": clips, "captions": [["noise"], ["a tune", "music plays"]]})
        >>> result = evaluate_retrieval(load_clap(str(tiny_zoo["clap"])), table, n_resamples=0)
        >>> result["n_audios"], result["n_captions"], result["n_queries"], sorted(result["metrics"])[:2]
        (2, 3, {'t2a': 3, 'a2t': 2}, ['a2t_R@1', 'a2t_R@10'])
    """
    check_map_protocol(map_protocol)
    missing = [column for column in (audio_column, captions_column) if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"the retrieval dataset lacks {', '.join(missing)}; it has {', '.join(dataset.column_names)}"
        )
    audio_parts, distinct_audio, audio_of = [], {}, []
    texts, text_to_audio = [], []
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
        new = []
        for clip in clips:
            key = hashlib.sha256(clip[0].tobytes()).digest()
            if key not in distinct_audio:
                distinct_audio[key] = len(distinct_audio)
                new.append(clip[0])
            audio_of.append(distinct_audio[key])
        if new:
            audio_parts.append(clap.embed_audio(new))
        offset += media.size
    if not texts:
        raise ValueError(f"the retrieval dataset has no captions in {captions_column!r} ({offset} rows)")
    distinct_texts = dict.fromkeys(texts)
    text_rows = {text: row for row, text in enumerate(distinct_texts)}
    text_embeds = clap.embed_text(list(distinct_texts))
    embeddings = (text_embeds[[text_rows[text] for text in texts]], np.concatenate(audio_parts)[audio_of],
                  np.asarray(text_to_audio, dtype=np.int64))
    ranks = retrieval_ranks(*embeddings)
    intervals = bootstrap_intervals(ranks, n_resamples, seed, map_protocol=map_protocol) if n_resamples else {}
    return {
        "metrics": summarize_ranks(ranks, map_protocol=map_protocol),
        "confidence_intervals": {key: list(interval) for key, interval in intervals.items()},
        "position_metrics": summarize_ranks(position_ranks(*embeddings), map_protocol=map_protocol),
        "map_protocol": map_protocol,
        "n_audios": ranks.n_audios,
        "n_captions": len(texts),
        "n_queries": {"t2a": len(texts), "a2t": len(ranks.queried)},
    }


def benchmark_name(dataset: str | Path) -> str:
    """A benchmark's name in reports: the last part of its folder or Hub id.

    Example:
        >>> benchmark_name("data/audiocaps-test/"), benchmark_name("org/clotho")
        ('audiocaps-test', 'clotho')
    """
    return Path(str(dataset).rstrip("/")).name


def retrieval_report_rows(benchmark: str, evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Report rows of an :func:`evaluate_retrieval` result: tasks ``t2a``, ``a2t`` and ``overall``, with exact
    ties counted against the model (with the confidence intervals), then broken by position as the reference
    code breaks them (``position_metrics``, where the result has them).

    ``n`` is the number of queries each direction had (captions for T2A, clips with captions for A2T);
    ``overall`` is the mean of the two directions, as LAION-CLAP selects checkpoints, with the A2T ``n``.
    Each row names its protocol (:func:`~fusion_datasets.eval.retrieval.retrieval_protocols`).
    """
    # train-clap's eval_results.json entries from before n_queries and map_protocol: every audio, sorted
    sizes = evaluation.get("n_queries") or {"t2a": evaluation["n_captions"], "a2t": evaluation["n_audios"]}
    sizes = {**sizes, "overall": sizes["a2t"]}
    intervals = evaluation.get("confidence_intervals", {})
    rows = []
    for ties, figures in zip(TIES, (evaluation["metrics"], evaluation.get("position_metrics"))):
        protocols = retrieval_protocols(evaluation.get("map_protocol", "sorted"), ties)
        by_metric: dict[str, list[float]] = {}
        for key, value in (figures or {}).items():
            task, metric = key.split("_", 1)
            rows.append({"benchmark": benchmark, "task": task, "metric": metric, "value": value,
                         "n": sizes[task], "protocol": protocols[key]})
            if key in intervals and figures is evaluation["metrics"]:
                rows[-1]["ci95"] = list(intervals[key])
            by_metric.setdefault(metric, []).append(value)
        rows += [{"benchmark": benchmark, "task": "overall", "metric": metric, "value": float(np.mean(values)),
                  "n": sizes["overall"], "protocol": protocols[f"overall_{metric}"]}
                 for metric, values in by_metric.items()]
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
    map_protocol: str = "sorted",
) -> dict[str, Any]:
    """``fusion-datasets eval retrieval``: evaluate ``model`` on ``dataset``, write ``report.json`` and ``.md``.

    ``dataset`` is a folder or Hub id that ``datasets.load_dataset(dataset, config, split=split)`` reads;
    the benchmark is named after its last path part unless ``benchmark`` is given; ``map_protocol`` is the
    A2T mAP@10's, ``sorted`` (WavCaps) or ``unsorted`` (LAION-CLAP's code).
    """
    import datasets

    check_map_protocol(map_protocol)
    table = datasets.load_dataset(str(dataset), config, split=split)
    clap = load_clap(model, kind, device=device, batch_size=batch_size, text_encoder=text_encoder)
    evaluation = evaluate_retrieval(
        clap, table, audio_column, captions_column, batch_size, n_resamples, seed, map_protocol
    )
    name = benchmark or benchmark_name(dataset)
    settings = {"kind": kind, "text_encoder": text_encoder, "split": split, "map_protocol": map_protocol,
                "n_resamples": n_resamples, "seed": seed}
    return write_report(output, model, retrieval_report_rows(name, evaluation), settings=settings,
                        extents={name: benchmark_extent(dataset, table.num_rows)})
