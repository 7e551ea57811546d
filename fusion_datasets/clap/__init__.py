"""CLAP, built once for its three jobs: the hallucination filter, retrieval evaluation, fine-tuning.

:mod:`~fusion_datasets.clap.embed` gives one embedding interface (:mod:`~fusion_datasets.clap.base`) over
transformers checkpoints and original LAION-CLAP ``.pt`` files (:mod:`~fusion_datasets.clap.laion`);
:mod:`~fusion_datasets.clap.filter` is the filter step and
:mod:`~fusion_datasets.clap.calibrate` picks its threshold against human judgements.
"""

from fusion_datasets.clap.base import ClapEmbedder
from fusion_datasets.clap.calibrate import (
    CalibrationResult,
    calibrate_filter,
    calibrate_threshold,
    plot_calibration,
    score_judgements,
)
from fusion_datasets.clap.embed import TransformersClap, clap_scores, load_clap
from fusion_datasets.clap.filter import ClapFilterConfig, ClapSimilarityFilter, filter_stats
from fusion_datasets.clap.judgements import load_judgements, resolve_audio
from fusion_datasets.clap.laion import LaionClap

__all__ = [
    "CalibrationResult",
    "ClapEmbedder",
    "ClapFilterConfig",
    "ClapSimilarityFilter",
    "LaionClap",
    "TransformersClap",
    "calibrate_filter",
    "calibrate_threshold",
    "clap_scores",
    "filter_stats",
    "load_clap",
    "load_judgements",
    "plot_calibration",
    "resolve_audio",
    "score_judgements",
]
