"""Text-audio retrieval under the LAION-CLAP protocol, with a bootstrap confidence interval over audios.

The protocol (LAION-CLAP's ``evaluate_clotho_audiocaps``, after Mei et al.'s audio-text retrieval code):

- similarity is the cosine of the embeddings (they are L2-normalised here);
- T2A: every caption is a query; its rank is the rank of its audio among all audios;
- A2T: every audio with captions is a query over all captions; R@k and the mean and median rank use
  the best rank among its captions;
- mAP@10: for T2A, 1/rank when rank <= 10, else 0 (one relevant audio per caption); for A2T, with
  its ``n`` captions' ranks sorted, ``r_1 < r_2 < ...``, ``AP@10 = (1/n) * sum(i / r_i for r_i <= 10)``.
  The ranks are sorted, as LAION-CLAP's docstring and Mei et al.'s code say (LAION-CLAP's code itself
  takes them in caption order, which can only lower its number);
- ties are pessimistic: an irrelevant item tied with a relevant one ranks before it; tied captions of
  one audio take consecutive ranks. The numbers never depend on the order of the items;
- R@k and mAP@10 are percentages; the mean rank is the mean 1-based rank and the median rank is
  ``floor(median)``, as in LAION-CLAP;
- audios without captions are distractors for T2A and not A2T queries.

Similarities are computed in blocks of at most ``_BLOCK_CELLS`` cells, so 10k audios by 50k captions
never need a dense matrix in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_datasets.clap.embed import normalize_rows

RETRIEVAL_KEYS = (
    *(f"{direction}_{metric}" for direction in ("t2a", "a2t") for metric in ("R@1", "R@5", "R@10", "mAP@10")),
    *(f"{direction}_{metric}" for direction in ("t2a", "a2t") for metric in ("mean_rank", "median_rank")),
)
_TOP = 10
_BLOCK_CELLS = 1 << 24  # 64 MB of float32 similarities per block


@dataclass(frozen=True)
class RetrievalRanks:
    """Per-query ranks (1-based), from which every metric and its bootstrap are computed."""

    t2a: np.ndarray  # per caption: the rank of its audio
    a2t: np.ndarray  # per queried audio: the best rank among its captions
    a2t_ap: np.ndarray  # per queried audio: AP@10 over its captions
    text_to_audio: np.ndarray
    queried: np.ndarray  # the audios with captions, in the order of ``a2t``
    n_audios: int


def _inputs(
    text_embeds: Any, audio_embeds: Any, text_to_audio: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    text, audio = np.asarray(text_embeds, dtype=np.float32), np.asarray(audio_embeds, dtype=np.float32)
    links = np.asarray(text_to_audio)
    if text.ndim != 2 or audio.ndim != 2 or text.shape[1] != audio.shape[1]:
        raise ValueError(f"need (captions, d) and (audios, d) embeddings, got {text.shape} and {audio.shape}")
    if len(text) == 0 or len(audio) == 0:
        raise ValueError("retrieval needs at least one caption and one audio")
    if links.shape != (len(text),) or not np.issubdtype(links.dtype, np.integer):
        raise ValueError(
            f"text_to_audio must hold one audio index per caption ({len(text)}), got {links.shape} {links.dtype}"
        )
    if links.min() < 0 or links.max() >= len(audio):
        raise ValueError(
            f"text_to_audio indices must lie in [0, {len(audio)}), got {links.min()}..{links.max()}"
        )
    return normalize_rows(text), normalize_rows(audio), links.astype(np.int64)


def _t2a_ranks(text: np.ndarray, audio: np.ndarray, links: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(text), dtype=np.int64)
    step = max(1, _BLOCK_CELLS // len(audio))
    for start in range(0, len(text), step):
        similarities = text[start : start + step] @ audio.T
        relevant = similarities[np.arange(len(similarities)), links[start : start + step]]
        # counts the relevant audio itself and every tie: pessimistic
        ranks[start : start + step] = (similarities >= relevant[:, None]).sum(axis=1)
    return ranks


def _a2t_ranks(
    text: np.ndarray, audio: np.ndarray, captions_of: list[np.ndarray], queried: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best rank and AP@10 of each ``queried`` audio, whose captions' indices are ``captions_of[audio]``."""
    most = max(len(captions) for captions in captions_of)
    step = max(1, _BLOCK_CELLS // (len(text) * most))
    best, precision = [], []
    positions = np.arange(1, most + 1)
    for start in range(0, len(queried), step):
        block = queried[start : start + step]
        similarities = audio[block] @ text.T
        relevant = np.full((len(block), most), -np.inf, dtype=np.float32)  # sorted high to low, padded
        for row, index in enumerate(block):
            own = np.sort(similarities[row, captions_of[index]])[::-1]
            relevant[row, : len(own)] = own
        at_least = (similarities[:, None, :] >= relevant[:, :, None]).sum(axis=2)
        relevant_at_least = (relevant[:, None, :] >= relevant[:, :, None]).sum(axis=2)
        # the i-th best caption comes after every irrelevant caption scoring at least as high
        ranks = positions + at_least - relevant_at_least
        counts = np.array([len(captions_of[index]) for index in block])
        valid = positions[None, :] <= counts[:, None]
        hits = valid & (ranks <= _TOP)
        best.append(ranks[:, 0])
        precision.append(np.where(hits, positions / ranks, 0.0).sum(axis=1) / counts)
    return np.concatenate(best), np.concatenate(precision)


def retrieval_ranks(text_embeds: Any, audio_embeds: Any, text_to_audio: Any) -> RetrievalRanks:
    """The per-query ranks behind :func:`retrieval_metrics` (see the module docstring for the protocol)."""
    text, audio, links = _inputs(text_embeds, audio_embeds, text_to_audio)
    order = np.argsort(links, kind="stable")
    captions_of = np.split(order, np.cumsum(np.bincount(links, minlength=len(audio)))[:-1])
    queried = np.flatnonzero(np.bincount(links, minlength=len(audio)))
    a2t, a2t_ap = _a2t_ranks(text, audio, captions_of, queried)
    return RetrievalRanks(_t2a_ranks(text, audio, links), a2t, a2t_ap, links, queried, len(audio))


def summarize_ranks(ranks: RetrievalRanks, audio_weights: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of ``ranks``; ``audio_weights`` (a count per audio) weighs each audio's queries."""
    t2a_weights = None if audio_weights is None else audio_weights[ranks.text_to_audio]
    a2t_weights = None if audio_weights is None else audio_weights[ranks.queried]
    t2a_ap = np.where(ranks.t2a <= _TOP, 1.0 / ranks.t2a, 0.0)
    directions = (("t2a", ranks.t2a, t2a_ap, t2a_weights), ("a2t", ranks.a2t, ranks.a2t_ap, a2t_weights))
    metrics: dict[str, float] = {}
    for name, rank, precision, weights in directions:
        for k in (1, 5, 10):
            metrics[f"{name}_R@{k}"] = 100 * float(np.average(rank <= k, weights=weights))
        metrics[f"{name}_mAP@10"] = 100 * float(np.average(precision, weights=weights))
    for name, rank, _, weights in directions:
        metrics[f"{name}_mean_rank"] = float(np.average(rank, weights=weights))
        metrics[f"{name}_median_rank"] = float(
            np.floor(np.median(rank if weights is None else np.repeat(rank, weights)))
        )
    return metrics


def retrieval_metrics(text_embeds: Any, audio_embeds: Any, text_to_audio: Any) -> dict[str, float]:
    """R@1/5/10 and mAP@10 (percentages) and mean/median rank, text-to-audio and audio-to-text.

    ``text_to_audio[i]`` is the index of the audio that caption ``i`` describes.

    Example:
        >>> audio = np.eye(2)
        >>> text = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]])  # caption 2 is closer to audio 0
        >>> metrics = retrieval_metrics(text, audio, [0, 1, 1])
        >>> round(metrics["t2a_R@1"], 2), metrics["a2t_R@1"], metrics["t2a_mean_rank"]
        (66.67, 100.0, 1.3333333333333333)
    """
    return summarize_ranks(retrieval_ranks(text_embeds, audio_embeds, text_to_audio))


def bootstrap_intervals(
    ranks: RetrievalRanks, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every metric over ``n_resamples`` resamplings of the queried audios.

    An audio drawn ``c`` times weighs ``c`` in A2T and weighs each of its captions ``c`` in T2A; the
    ranks stay those against the full gallery.
    """
    if n_resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need n_resamples >= 1 and 0 < level < 1, got {n_resamples} and {level}")
    rng = np.random.default_rng(seed)
    size = len(ranks.queried)
    samples: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        weights = np.bincount(ranks.queried[rng.integers(0, size, size)], minlength=ranks.n_audios)
        for key, value in summarize_ranks(ranks, weights).items():
            samples.setdefault(key, []).append(value)
    tail = 100 * (1 - level) / 2
    return {
        key: (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
        for key, values in samples.items()
    }


def retrieval_confidence_intervals(
    text_embeds: Any,
    audio_embeds: Any,
    text_to_audio: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """A bootstrap ``level`` interval of each :func:`retrieval_metrics` value, resampling audios.

    Example:
        >>> intervals = retrieval_confidence_intervals(text, audio, text_to_audio)  # doctest: +SKIP
        >>> low, high = intervals["t2a_R@1"]  # doctest: +SKIP
    """
    return bootstrap_intervals(
        retrieval_ranks(text_embeds, audio_embeds, text_to_audio), n_resamples, seed, level
    )
