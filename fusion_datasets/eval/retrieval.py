"""Text-audio retrieval, as WavCaps and LAION-CLAP evaluate it, with a bootstrap confidence interval over audios.

The protocol (Mei et al.'s audio-text retrieval code, which WavCaps, FusionAudio's retrieval eval and
LAION-CLAP's ``evaluate_clotho_audiocaps`` follow):

- similarity is the cosine of the embeddings;
- T2A: every caption is a query; its rank is the rank of its audio among all audios;
- A2T: every audio with captions is a query over all captions; R@k and the mean and median rank use
  the best rank among its captions;
- mAP@10: for T2A, 1/rank when rank <= 10, else 0 (one relevant audio per caption). For A2T, an audio's
  ``n`` captions have ranks ``r_1, r_2, ...`` and ``AP@10 = (1/n) * sum(i / r_i)`` over the ranks <= 10,
  ``i`` counting those from 1. ``map_protocol`` says in which order: ``sorted`` (the default: WavCaps and
  Mei et al.'s code, LAION-CLAP's docstring) sorts the ranks; ``unsorted`` (LAION-CLAP's code) takes them
  in caption order. Sorted ranks give the smallest sum, so ``unsorted`` is never lower (one audio's AP can
  even pass 1) and depends on the order of an audio's captions;
- ties count against the model (``ties-against-model``, the headline): an irrelevant item scoring as high
  as a relevant one ranks before it (a copy of a caption's audio, another clip's copy of an audio's
  caption), and an audio's tied captions take consecutive ranks in caption order. The reference code breaks
  exact ties by position instead: WavCaps ranks by ``np.argsort(scores)[::-1]``, which under a stable sort
  puts the tied item later in the benchmark's row order first (numpy's default sort does so up to 16 items,
  and in an order of its own beyond). :func:`position_ranks` ranks so (``ties-by-position``), so a figure
  can be set beside a paper's; without exact ties the two are the same;
- R@k and mAP@10 are percentages; the mean rank is the mean 1-based rank and the median rank is
  ``floor(median)``, as in LAION-CLAP;
- audios without captions are distractors for T2A and not A2T queries.

Ties are exact: each distinct embedding is normalised and scored once, in float64, in an order set by its
bytes, and its copies share those scores. So identical embeddings score the same numbers and no rank
depends on the order of the items (under ``unsorted``, but for the order of an audio's captions); a figure
can change in the last bits of a sum taken in another order, no more.
(From one float32 matrix product, two copies of an audio scored 1.8e-7 apart, and a shuffle of the items
moved a T2A R@1 from 15.2 to 6.0.)

Similarities are computed in blocks of at most ``_BLOCK_CELLS`` cells, so 10k audios by 50k captions
never need a dense matrix in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RETRIEVAL_KEYS = (
    *(f"{direction}_{metric}" for direction in ("t2a", "a2t") for metric in ("R@1", "R@5", "R@10", "mAP@10")),
    *(f"{direction}_{metric}" for direction in ("t2a", "a2t") for metric in ("mean_rank", "median_rank")),
)
MAP_PROTOCOLS = ("sorted", "unsorted")
TIES = ("ties-against-model", "ties-by-position")  # how exact ties rank: the headline, and the references' way
_TOP = 10
_BLOCK_CELLS = 1 << 23  # 64 MB of float64 similarities per block
_UNRANKED = np.iinfo(np.int64).max  # pads the caption ranks of an audio with fewer captions than the most


def check_map_protocol(map_protocol: str) -> str:
    """``map_protocol`` when it is one of :data:`MAP_PROTOCOLS`; else a ``ValueError`` naming them."""
    if map_protocol not in MAP_PROTOCOLS:
        raise ValueError(
            f"unknown A2T mAP@10 protocol {map_protocol!r}: use 'sorted' (WavCaps, Mei et al.; the default) "
            "or 'unsorted' (LAION-CLAP's code)"
        )
    return map_protocol


def retrieval_protocols(map_protocol: str = "sorted", ties: str = TIES[0]) -> dict[str, str]:
    """The protocol of each :data:`RETRIEVAL_KEYS` metric, and of ``overall_<metric>`` (both directions' mean),
    with ``ties`` (one of :data:`TIES`) the way exact ties rank.

    Example:
        >>> protocols = retrieval_protocols("unsorted")
        >>> protocols["t2a_R@1"], protocols["a2t_mAP@10"]
        ('t2a/each-caption+ties-against-model', 'a2t_map@10/unsorted+ties-against-model')
        >>> retrieval_protocols(ties="ties-by-position")["overall_mAP@10"]
        'mean(t2a/each-caption+ties-by-position, a2t_map@10/sorted+ties-by-position)'
    """
    check_map_protocol(map_protocol)
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    protocols = {key: "t2a/each-caption" if key.startswith("t2a") else "a2t/best-caption" for key in RETRIEVAL_KEYS}
    protocols["a2t_mAP@10"] = f"a2t_map@10/{map_protocol}"
    protocols = {key: f"{protocol}+{ties}" for key, protocol in protocols.items()}
    for metric in dict.fromkeys(key.split("_", 1)[1] for key in RETRIEVAL_KEYS):
        protocols[f"overall_{metric}"] = f"mean({protocols['t2a_' + metric]}, {protocols['a2t_' + metric]})"
    return protocols


@dataclass(frozen=True)
class RetrievalRanks:
    """Per-query ranks (1-based), from which every metric and its bootstrap are computed."""

    t2a: np.ndarray  # per caption: the rank of its audio
    a2t_captions: np.ndarray  # per queried audio, per caption in caption order: its rank; padded _UNRANKED
    text_to_audio: np.ndarray
    queried: np.ndarray  # the audios with captions, in the order of ``a2t_captions``
    n_audios: int

    @property
    def a2t(self) -> np.ndarray:
        """Per queried audio: the best rank among its captions."""
        return self.a2t_captions.min(axis=1)

    def a2t_ap(self, map_protocol: str = "sorted") -> np.ndarray:
        """Per queried audio: AP@10 over its captions' ranks, sorted or in caption order."""
        ranks = self.a2t_captions
        if check_map_protocol(map_protocol) == "sorted":
            ranks = np.sort(ranks, axis=1)
        hits = ranks <= _TOP
        return (hits * np.cumsum(hits, axis=1) / ranks).sum(axis=1) / (self.a2t_captions != _UNRANKED).sum(axis=1)


@dataclass(frozen=True)
class _Distinct:
    """The distinct rows of some embeddings, each unit-normalised once, in float64, in the order of their bytes."""

    vectors: np.ndarray
    of: np.ndarray  # per item: its row of ``vectors``
    counts: np.ndarray  # per row of ``vectors``: how many items have it


def _distinct(embeddings: np.ndarray) -> _Distinct:
    rows = np.ascontiguousarray(embeddings)
    keys = rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1])))[:, 0]
    _, first, of, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    vectors = rows[first]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return _Distinct(vectors / np.maximum(norms, np.finfo(np.float64).tiny), of.ravel(), counts)


def _inputs(text_embeds: Any, audio_embeds: Any, text_to_audio: Any) -> tuple[_Distinct, _Distinct, np.ndarray]:
    text, audio = np.asarray(text_embeds, dtype=np.float64), np.asarray(audio_embeds, dtype=np.float64)
    links = np.asarray(text_to_audio)
    if text.ndim != 2 or audio.ndim != 2 or text.shape[1] != audio.shape[1] or not text.shape[1]:
        raise ValueError(f"need (captions, d) and (audios, d) embeddings, got {text.shape} and {audio.shape}")
    if len(text) == 0 or len(audio) == 0:
        raise ValueError("retrieval needs at least one caption and one audio")
    if not (np.isfinite(text).all() and np.isfinite(audio).all()):
        raise ValueError("the embeddings hold NaN or infinite values")
    if links.shape != (len(text),) or not np.issubdtype(links.dtype, np.integer):
        raise ValueError(
            f"text_to_audio must hold one audio index per caption ({len(text)}), got {links.shape} {links.dtype}"
        )
    if links.min() < 0 or links.max() >= len(audio):
        raise ValueError(
            f"text_to_audio indices must lie in [0, {len(audio)}), got {links.min()}..{links.max()}"
        )
    return _distinct(text), _distinct(audio), links.astype(np.int64)


def _copies(selected: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """How many items ``selected`` (over distinct rows, last axis) holds, copies included."""
    return np.einsum("...j,j->...", selected, counts)  # 10x faster than a non-BLAS bool @ int matmul


def _t2a_ranks(text: _Distinct, audio: _Distinct, links: np.ndarray) -> np.ndarray:
    """Per caption: how many audios (its own and its copies among them) score at least as high as its own."""
    ranks = np.empty(len(text.of), dtype=np.int64)
    step = max(1, _BLOCK_CELLS // len(audio.vectors))
    for start in range(0, len(text.vectors), step):
        captions = np.flatnonzero((text.of >= start) & (text.of < start + step))
        similarities = (text.vectors[start : start + step] @ audio.vectors.T)[text.of[captions] - start]
        relevant = similarities[np.arange(len(captions)), audio.of[links[captions]]]
        ranks[captions] = _copies(similarities >= relevant[:, None], audio.counts)
    return ranks


def _a2t_ranks(
    text: _Distinct, audio: _Distinct, captions_of: list[np.ndarray], queried: np.ndarray
) -> np.ndarray:
    """The rank of each caption of each ``queried`` audio (its captions' indices: ``captions_of[audio]``)."""
    most = max(len(captions_of[index]) for index in queried)
    ranks = np.full((len(queried), most), _UNRANKED, dtype=np.int64)
    positions = np.arange(1, most + 1)
    groups = audio.of[queried]
    wanted = np.unique(groups)
    step = max(1, _BLOCK_CELLS // (len(text.vectors) * most))
    for start in range(0, len(wanted), step):
        block = wanted[start : start + step]
        rows = np.flatnonzero(np.isin(groups, block))
        similarities = (audio.vectors[block] @ text.vectors.T)[np.searchsorted(block, groups[rows])]
        own = np.full((len(rows), most), -np.inf)  # per row, its captions' scores in caption order
        for row, index in enumerate(queried[rows]):
            own[row, : len(captions_of[index])] = similarities[row, text.of[captions_of[index]]]
        order = np.argsort(-own, axis=1, kind="stable")  # best first, tied captions in caption order
        own = np.take_along_axis(own, order, axis=1)
        at_least = _copies(similarities[:, None, :] >= own[:, :, None], text.counts)
        own_at_least = (own[:, None, :] >= own[:, :, None]).sum(axis=2)
        # the i-th best caption comes after every other caption scoring at least as high
        in_caption_order = np.empty((len(rows), most), dtype=np.int64)
        np.put_along_axis(in_caption_order, order, positions + at_least - own_at_least, axis=1)
        counts = np.array([len(captions_of[index]) for index in queried[rows]])
        ranks[rows] = np.where(positions <= counts[:, None], in_caption_order, _UNRANKED)
    return ranks


def retrieval_ranks(text_embeds: Any, audio_embeds: Any, text_to_audio: Any) -> RetrievalRanks:
    """The per-query ranks behind :func:`retrieval_metrics` (see the module docstring for the protocol)."""
    text, audio, links = _inputs(text_embeds, audio_embeds, text_to_audio)
    per_audio = np.bincount(links, minlength=len(audio.of))
    captions_of = np.split(np.argsort(links, kind="stable"), np.cumsum(per_audio)[:-1])
    queried = np.flatnonzero(per_audio)
    return RetrievalRanks(
        _t2a_ranks(text, audio, links), _a2t_ranks(text, audio, captions_of, queried), links, queried, len(audio.of)
    )


def position_ranks(text_embeds: Any, audio_embeds: Any, text_to_audio: Any) -> RetrievalRanks:
    """The per-query ranks with exact ties broken by position, as WavCaps' ``np.argsort(scores)[::-1]`` breaks
    them under a stable sort: of two items scoring the same, the one later in the benchmark's row order
    ranks first. The scores are those of :func:`retrieval_ranks`.

    Example:
        >>> audio = np.array([[1.0, 0.0], [1.0, 0.0]])  # two copies of one audio
        >>> position_ranks(np.eye(2)[:1], audio, [0]).t2a, retrieval_ranks(np.eye(2)[:1], audio, [0]).t2a
        (array([2]), array([2]))
        >>> position_ranks(np.eye(2)[:1], audio, [1]).t2a  # the later copy ranks first
        array([1])
    """
    text, audio, links = _inputs(text_embeds, audio_embeds, text_to_audio)
    per_audio = np.bincount(links, minlength=len(audio.of))
    captions_of = np.split(np.argsort(links, kind="stable"), np.cumsum(per_audio)[:-1])
    queried = np.flatnonzero(per_audio)
    t2a = np.empty(len(links), dtype=np.int64)
    step = max(1, _BLOCK_CELLS // len(audio.of))
    for start in range(0, len(links), step):
        rows = np.arange(start, min(start + step, len(links)))
        scores = (text.vectors[text.of[rows]] @ audio.vectors.T)[:, audio.of]  # per caption, every audio item
        own = scores[np.arange(len(rows)), links[rows]][:, None]
        later = np.arange(len(audio.of)) > links[rows][:, None]
        t2a[rows] = 1 + (scores > own).sum(axis=1) + ((scores == own) & later).sum(axis=1)
    most = int(per_audio.max())
    a2t = np.full((len(queried), most), _UNRANKED, dtype=np.int64)
    step = max(1, _BLOCK_CELLS // (len(text.of) * most))
    for start in range(0, len(queried), step):
        block = queried[start : start + step]
        scores = (audio.vectors[audio.of[block]] @ text.vectors.T)[:, text.of]  # per audio, every caption item
        for row, index in enumerate(block):
            captions = captions_of[index]
            own = scores[row, captions][:, None]
            later = np.arange(len(text.of)) > captions[:, None]
            a2t[start + row, : len(captions)] = 1 + (scores[row] > own).sum(axis=1) + (
                (scores[row] == own) & later).sum(axis=1)
    return RetrievalRanks(t2a, a2t, links, queried, len(audio.of))


def summarize_ranks(
    ranks: RetrievalRanks, audio_weights: np.ndarray | None = None, map_protocol: str = "sorted"
) -> dict[str, float]:
    """The metrics of ``ranks``; ``audio_weights`` (a count per audio) weighs each audio's queries."""
    t2a_weights = None if audio_weights is None else audio_weights[ranks.text_to_audio]
    a2t_weights = None if audio_weights is None else audio_weights[ranks.queried]
    t2a_ap = np.where(ranks.t2a <= _TOP, 1.0 / ranks.t2a, 0.0)
    directions = (
        ("t2a", ranks.t2a, t2a_ap, t2a_weights),
        ("a2t", ranks.a2t, ranks.a2t_ap(map_protocol), a2t_weights),
    )
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


def retrieval_metrics(
    text_embeds: Any, audio_embeds: Any, text_to_audio: Any, map_protocol: str = "sorted"
) -> dict[str, float]:
    """R@1/5/10 and mAP@10 (percentages) and mean/median rank, text-to-audio and audio-to-text.

    ``text_to_audio[i]`` is the index of the audio that caption ``i`` describes; ``map_protocol`` is the
    A2T mAP@10's, ``sorted`` (WavCaps) or ``unsorted`` (LAION-CLAP's code).

    Example:
        >>> audio = np.eye(2)
        >>> text = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]])  # caption 2 is closer to audio 0
        >>> metrics = retrieval_metrics(text, audio, [0, 1, 1])
        >>> round(metrics["t2a_R@1"], 2), metrics["a2t_R@1"], metrics["t2a_mean_rank"]
        (66.67, 100.0, 1.3333333333333333)
    """
    return summarize_ranks(retrieval_ranks(text_embeds, audio_embeds, text_to_audio), map_protocol=map_protocol)


def bootstrap_intervals(
    ranks: RetrievalRanks,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    map_protocol: str = "sorted",
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
        for key, value in summarize_ranks(ranks, weights, map_protocol).items():
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
    map_protocol: str = "sorted",
) -> dict[str, tuple[float, float]]:
    """A bootstrap ``level`` interval of each :func:`retrieval_metrics` value, resampling audios.

    Example:
        >>> audio = np.eye(2)
        >>> text = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]])  # caption 2 is closer to audio 0
        >>> retrieval_confidence_intervals(text, audio, [0, 1, 1], n_resamples=100)["t2a_R@1"]
        (50.0, 100.0)
    """
    return bootstrap_intervals(
        retrieval_ranks(text_embeds, audio_embeds, text_to_audio), n_resamples, seed, level, map_protocol
    )
