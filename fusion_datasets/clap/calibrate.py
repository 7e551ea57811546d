"""Calibrating the CLAP filter's threshold against human judgements of captions.

The paper chose 0.08 on 300 human-rated captions with an F-beta score, beta 1.05. Here the positive
class is a *good* caption and the prediction is *kept* (score >= threshold): precision is the share
of kept captions that are good, recall the share of good captions that are kept, and beta > 1 weighs
recall a little more (losing a good caption costs slightly more than keeping a bad one).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_datasets.clap.filter import ClapSimilarityFilter
from fusion_datasets.clap.judgements import load_all_judgements, resolve_audio
from fusion_datasets.files import write_text_atomically
from fusion_datasets.loading import recorded_local_model

logger = logging.getLogger(__name__)

PAPER_BETA = 1.05


@dataclass(frozen=True)
class CalibrationResult:
    """The chosen threshold and how it does on the judged captions (rates are fractions in [0, 1])."""

    threshold: float
    beta: float
    f_beta: float
    precision: float
    recall: float
    agreement: float  # accuracy: good captions kept plus bad ones removed, over all scored
    removed_share: float
    n: int
    n_good: int
    n_unscored: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"threshold {self.threshold:.4f}: F{self.beta:g} {self.f_beta:.3f}, "
            f"precision {self.precision:.3f}, recall {self.recall:.3f}, agreement {self.agreement:.3f}, "
            f"removes {100 * self.removed_share:.1f}% "
            f"({self.n} captions, {self.n_good} good, {self.n_unscored} unscored)"
        )


def calibrate_threshold(scores: Any, labels: Any, beta: float = PAPER_BETA) -> CalibrationResult:
    """The threshold maximising F-beta of "good caption kept", over scores with good (True) / bad labels.

    Candidates are the lowest score (keep all) and the midpoints between consecutive distinct scores;
    among equal F-beta the lowest threshold (fewest removals) wins. Rows without a score (None, NaN)
    are left out and counted in ``n_unscored``.

    Example:
        >>> calibrate_threshold([0.3, 0.4, 0.0, 0.1], [True, True, False, False]).threshold
        0.2
    """
    values = np.array([np.nan if score is None else score for score in scores], dtype=np.float64)
    good = np.asarray(labels, dtype=bool)
    if values.shape != good.shape:
        raise ValueError(f"got {values.size} scores for {good.size} labels")
    scored = ~np.isnan(values)
    values, good = values[scored], good[scored]
    if not good.any():
        raise ValueError("calibration needs at least one good caption with a score")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    distinct = np.unique(values)
    candidates = np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2])
    kept = values[None, :] >= candidates[:, None]
    true_kept = (kept & good).sum(axis=1)
    precision = true_kept / kept.sum(axis=1)
    recall = true_kept / good.sum()
    weight = beta**2
    denominator = weight * precision + recall
    f_beta = np.divide(
        (1 + weight) * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    best = int(np.argmax(f_beta))
    agreement = (kept[best] == good).mean()
    return CalibrationResult(
        threshold=float(candidates[best]),
        beta=beta,
        f_beta=float(f_beta[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
        agreement=float(agreement),
        removed_share=float(1 - kept[best].mean()),
        n=int(values.size),
        n_good=int(good.sum()),
        n_unscored=int((~scored).sum()),
    )


def score_judgements(
    judgements: Any, model: str, audio_root: str | Path | None = None, **options: Any
) -> Any:
    """``judgements`` with ``clap_score`` (and ``errors``) from the CLAP filter step on ``model``.

    ``options`` are :class:`~fusion_datasets.clap.filter.ClapFilterConfig` fields (``kind``,
    ``text_encoder``, ``device``, ``batch_size``...).
    """
    located = resolve_audio(judgements, audio_root)
    step = ClapSimilarityFilter(model=model, **options)
    scored = located.map(
        step,
        batched=True,
        with_rank=True,
        batch_size=step.config.batch_size,
        features=step.output_features(located.features),
        desc="CLAP scores",
    )
    failed = [row["errors"] for row in scored.select_columns(["errors"]) if row["errors"]]
    if failed:
        logger.warning(
            "%d of %d judged captions have no CLAP score; first error: %s",
            len(failed),
            len(scored),
            failed[0],
        )
    return scored


def plot_calibration(scores: Any, labels: Any, result: CalibrationResult, path: str | Path) -> Path:
    """Save histograms of good and bad captions' scores with the chosen threshold as a PNG."""
    from matplotlib.figure import Figure

    values = np.array([np.nan if score is None else score for score in scores], dtype=np.float64)
    good = np.asarray(labels, dtype=bool)
    scored = ~np.isnan(values)
    edges = np.histogram_bin_edges(values[scored], bins=30)
    # A bare Figure renders with Agg without touching pyplot's global backend.
    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    axes.hist(values[scored & good], bins=edges, alpha=0.6, label=f"good ({int((scored & good).sum())})")
    axes.hist(values[scored & ~good], bins=edges, alpha=0.6, label=f"bad ({int((scored & ~good).sum())})")
    axes.axvline(result.threshold, color="black", linestyle="--", label=f"threshold {result.threshold:.3f}")
    axes.set_xlabel("CLAP similarity of audio and caption")
    axes.set_ylabel("captions")
    axes.set_title(f"F{result.beta:g} {result.f_beta:.3f}, removes {100 * result.removed_share:.1f}%")
    axes.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def reviewed_run_model(model: str, judgements: Sequence[str | Path]) -> str:
    """``model``, or for a local model's public name (``local:NAME``) the folder that the run recorded, where the
    judgements are a review's of that run (``OUT/review/<reviewer>.jsonl``, written by ``fusion-datasets review``).
    """
    folders = (recorded_local_model(Path(path).resolve().parent.parent, model) for path in judgements)
    return next((folder for folder in folders if folder), model)  # else load_clap's error names the model


def calibrate_filter(
    judgements: str | Path | Sequence[str | Path],
    model: str,
    output_dir: str | Path,
    *,
    audio_root: str | Path | None = None,
    score_cutoff: float | None = None,
    higher_is_better: bool = False,
    beta: float = PAPER_BETA,
    **options: Any,
) -> CalibrationResult:
    """Score human judgements with ``model``, pick the threshold, and write ``calibration.json`` and ``.png``.

    ``judgements`` is one file or several (one per reviewer, say): their rows are pooled. ``model`` may be a
    run's public name of a local model (``local:NAME``, as its config.yaml says) where the judgements are a
    review's of that run (``OUT/review/*.jsonl``): the folder the run recorded is loaded.
    """
    files = [judgements] if isinstance(judgements, (str, Path)) else list(judgements)
    table = load_all_judgements(files, score_cutoff=score_cutoff, higher_is_better=higher_is_better)
    scored = score_judgements(table, reviewed_run_model(model, files), audio_root, **options)
    scores, labels = scored["clap_score"], scored["good"]
    result = calibrate_threshold(scores, labels, beta=beta)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": i, "caption": c, "good": g, "clap_score": s}
        for i, c, g, s in zip(scored["id"], scored["caption"], labels, scores)
    ]
    report = {"model": model, "judgements": [str(path) for path in files], **result.to_dict(), "rows": rows}
    write_text_atomically(output / "calibration.json", json.dumps(report, indent=2) + "\n")
    plot_calibration(scores, labels, result, output / "calibration.png")
    return result
