"""Caption evaluation (``eval captions``): BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE, SPIDEr, FENSE, SPIDEr-FL and
CLAP similarity of a captioner's captions against a benchmark's reference captions."""

from fusion_datasets.eval.captions.run import run_captions_eval
from fusion_datasets.eval.captions.score import (
    METRICS,
    CaptionOptions,
    CaptionScores,
    bootstrap_intervals,
    score_captions,
    simple_tokenize,
)

__all__ = ["METRICS", "CaptionOptions", "CaptionScores", "bootstrap_intervals", "run_captions_eval",
           "score_captions", "simple_tokenize"]
