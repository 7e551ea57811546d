"""The hallucination filter: CLAP similarity of each clip's audio and its caption, against a threshold.

The paper scores every fused caption with LAION-CLAP and drops those under 0.08 (7.3% of its
captions). This step only writes ``clap_score`` and ``clap_keep``; it never drops a row: the runner
leaves rows whose ``clap_keep`` is false out of ``captions`` and keeps them in ``cues``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_datasets import runtime
from fusion_datasets.clap.base import ClapEmbedder
from fusion_datasets.clap.embed import CLAP_KINDS, DEFAULT_CLAP, clap_scores, load_clap
from fusion_datasets.config import resource
from fusion_datasets.media import MediaBatch
from fusion_datasets.registry import register
from fusion_datasets.steps import ModelConfig, ModelStep

PAPER_THRESHOLD = 0.08
# Fixed edges over the whole cosine range, so that the histograms of several parts add up.
HISTOGRAM_EDGES = tuple(np.round(np.linspace(-1.0, 1.0, 41), 6).tolist())


@dataclass(frozen=True)
class ClapFilterConfig(ModelConfig):
    model: str = DEFAULT_CLAP
    # The threshold was calibrated on float32 scores, and CLAP is small enough not to need less.
    dtype: str = "float32"
    kind: str = "auto"  # "transformers", "laion" (a .pt checkpoint) or "auto" (by the model's name)
    text_encoder: str = "roberta-base"  # LAION-CLAP only: the RoBERTa config and tokenizer, by id or path
    threshold: float = PAPER_THRESHOLD
    caption_column: str = "caption"
    audio_column: str = "audio"
    batch_size: int = resource(16)
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in CLAP_KINDS:
            raise ValueError(f"kind must be one of {', '.join(CLAP_KINDS)}, got {self.kind!r}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")


@register("clap_filter", "clap")
class ClapSimilarityFilter(ModelStep[ClapFilterConfig]):
    """Writes ``clap_score`` (cosine of audio and caption) and ``clap_keep`` (score >= threshold).

    ``clap_score`` is ``None`` where the caption is missing or blank, or the audio failed (the row gets
    an error); ``clap_keep`` is then false, so the caption is not kept.

    Example (the tiny zoo's random CLAP scores noise: a threshold of -1 keeps every scored caption):
        >>> from datasets import Dataset
        >>> from fusion_datasets.synthetic import music, write_audio
        >>> path = write_audio("tune.wav", music(1.0, 48000), 48000)
        >>> rows = Dataset.from_dict({"id": ["tune", "silent"], "audio": [str(path)] * 2,
        ...                           "caption": ["a piano melody", None]})
        >>> step = ClapSimilarityFilter(model=str(tiny_zoo["clap"]), threshold=-1.0)
        >>> scored = rows.map(step, batched=True, with_rank=True, features=step.output_features(rows.features))
        >>> columns = scored[:]
        >>> [score is not None and -1 <= score <= 1 for score in columns["clap_score"]], columns["clap_keep"]
        ([True, False], [True, False])
    """

    stage = "clap_filter"
    config_class = ClapFilterConfig

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {"clap_score": Value("float32"), "clap_keep": Value("bool")}

    @property
    def audio_column(self) -> str:
        return self.config.audio_column

    def reads(self) -> tuple[str, ...]:
        return (*super().reads(), self.config.caption_column)

    def counters(self, outputs: Mapping[str, Sequence[Any]]) -> dict[str, float]:
        scored = sum(score is not None for score in outputs["clap_score"])
        kept = sum(bool(keep) for keep in outputs["clap_keep"])
        return {"scored": scored, "kept": kept, "removed": scored - kept}

    def data_counts(self, cues: Any) -> dict[str, Any]:
        """Captions scored, those removed, and the histogram of their scores (:data:`HISTOGRAM_EDGES`)."""
        scored = [row for row in cues.select_columns(["clap_score", "clap_keep"]) if row["clap_score"] is not None]
        return {"clap_scored": len(scored), "removed_by_filter": sum(1 for row in scored if not row["clap_keep"]),
                "clap_histogram": score_histogram([row["clap_score"] for row in scored])}

    def summary(self, totals: Mapping[str, Any]) -> dict[str, Any]:
        """The histogram's bin edges (its counts cover ``[edges[i], edges[i + 1])``, the last bin closed) and the
        share of scored captions removed."""
        scored = totals.get("clap_scored", 0)
        return {"clap_histogram_edges": list(HISTOGRAM_EDGES),
                "filter_removal_rate": round(totals.get("removed_by_filter", 0) / scored, 4) if scored else 0.0}

    def clap(self, rank: int | None = None) -> ClapEmbedder:
        """This worker's CLAP model, loaded once per process."""
        config = self.config
        device = self.device(rank)
        dtype = runtime.resolve_dtype(config.dtype, device)
        key = ("clap", config.model, config.kind, config.text_encoder, config.revision, device, str(dtype))
        key += (config.batch_size, config.seed)
        return runtime.cached_model(
            key,
            lambda: load_clap(
                config.model,
                config.kind,
                device=device,
                dtype=dtype,
                batch_size=config.batch_size,
                seed=config.seed,
                revision=config.revision,
                text_encoder=config.text_encoder,
            ),
        )

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        column = self.config.caption_column
        if column not in media.batch:
            raise ValueError(
                f"{type(self).__name__} reads captions from {column!r}, which the batch lacks; "
                f"columns: {', '.join(media.batch)}"
            )
        outputs: dict[str, list] = {"clap_score": [None] * media.size, "clap_keep": [False] * media.size}
        captions = media.column(column)
        captioned = [
            row for row, caption in enumerate(captions) if isinstance(caption, str) and caption.strip()
        ]
        if not captioned:
            return outputs
        clap = self.clap(rank)
        clips = media.audio(clap.sampling_rate)
        rows = [row for row in captioned if clips[row] is not None]
        scores = self.run_guarded(
            media,
            rows,
            lambda subset: clap_scores(
                clap, [clips[row][0] for row in subset], [captions[row] for row in subset]
            ).tolist(),
        )
        for row, score in scores.items():
            outputs["clap_score"][row] = score
            outputs["clap_keep"][row] = score >= self.config.threshold
        return outputs


def filter_stats(
    scores: Sequence[float | None],
    threshold: float = PAPER_THRESHOLD,
    edges: Sequence[float] = HISTOGRAM_EDGES,
) -> dict[str, Any]:
    """Counts and the score histogram of a filter run, for ``stats.json``.

    ``missing`` counts rows without a score (no caption, or audio that failed); ``removal_rate`` is
    the share of scored captions under ``threshold``.

    Example:
        >>> stats = filter_stats([0.3, 0.01, None], threshold=0.08)
        >>> stats["kept"], stats["removed"], stats["missing"], stats["removal_rate"]
        (1, 1, 1, 0.5)
    """
    values = np.array([score for score in scores if score is not None], dtype=np.float64)
    values = values[~np.isnan(values)]
    kept = int(np.sum(values >= threshold))
    removed = int(values.size - kept)
    return {
        "threshold": threshold,
        "total": len(scores),
        "scored": int(values.size),
        "kept": kept,
        "removed": removed,
        "missing": len(scores) - int(values.size),
        "removal_rate": removed / values.size if values.size else 0.0,
        "histogram": {"edges": list(edges), "counts": score_histogram(values, edges)},
    }


def score_histogram(scores: Sequence[float] | np.ndarray, edges: Sequence[float] = HISTOGRAM_EDGES) -> list[int]:
    """Counts of ``scores`` in the fixed bins ``edges`` (so that histograms of several parts add up)."""
    values = np.asarray(scores, dtype=np.float64)
    # float32 rounding may put a cosine a hair outside [-1, 1]
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=np.asarray(edges))
    return counts.tolist()
