"""Every caption metric of one set of clips: :func:`score_captions`, and bootstrap intervals over clips.

Tokenization comes first, once, for every metric: pycocoevalcap's PTB tokenizer where Java runs (``ptb``),
else :func:`simple_tokenize` (``simple``: close to it, not equal; the protocols name the tokenizer). The
n-gram metrics then run in Python (:mod:`.ngrams`), METEOR and SPICE through the jars (:mod:`.java`), FENSE
through its models (:mod:`.fense`). A metric that cannot run is left out with its reason (``left_out``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fusion_datasets.errors import UserError
from fusion_datasets.eval.captions import fense, java, ngrams

logger = logging.getLogger(__name__)

BLEU = tuple(f"BLEU-{n}" for n in range(1, ngrams.MAX_N + 1))
METRICS = ("SPIDEr-FL", "FENSE", "SPIDEr", "CIDEr-D", "SPICE", "METEOR", "ROUGE-L", *BLEU, "SBERT-sim",
           "CLAP-sim")  # the report's order: DCASE's ranking metrics first
SKIPPABLE = {"meteor": ("METEOR",), "spice": ("SPICE", "SPIDEr", "SPIDEr-FL"),
             "fense": ("SBERT-sim", "FENSE", "SPIDEr-FL"), "clap": ("CLAP-sim",)}


@dataclass(frozen=True)
class CaptionOptions:
    """Where the reference tools and models are. ``skip``: keys of :data:`SKIPPABLE` not to compute.
    ``error_detector``: FENSE's ``echecker`` checkpoint (FENSE and SPIDEr-FL need it)."""

    java: str = "java"
    corenlp: str | None = None
    sentence_model: str = fense.DEFAULT_SENTENCE_MODEL
    error_detector: str | None = None
    error_detector_base: str | None = None
    device: str | None = None
    batch_size: int = 32
    skip: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.skip) - set(SKIPPABLE))
        if unknown:
            raise UserError(f"cannot skip {', '.join(unknown)}: the metrics that can be skipped are "
                            f"{', '.join(SKIPPABLE)}")


@dataclass
class CaptionScores:
    """Per-clip scores of the metrics that are means over clips, corpus figures of the others (BLEU from
    ``bleu_stats``, METEOR from its jar), each metric's protocol, and what was ``left_out`` and why."""

    per_clip: dict[str, list[float]] = field(default_factory=dict)
    corpus: dict[str, float] = field(default_factory=dict)
    protocols: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    bleu_stats: np.ndarray | None = None
    tokens: list[str] = field(default_factory=list)
    vocabulary: int = 0
    tokenizer: str = "simple"

    def values(self) -> dict[str, float]:
        """Every computed metric's corpus figure, in the report's order."""
        figures = {**{name: ngrams.mean(scores) for name, scores in self.per_clip.items()}, **self.corpus}
        return {name: figures[name] for name in METRICS if name in figures}

    def leave_out(self, names: Sequence[str], reason: str) -> None:
        for name in names:
            if name not in self.left_out:
                self.left_out[name] = reason
                logger.warning("%s left out: %s", name, reason)


def simple_tokenize(text: str) -> str:
    """Lower case, words split as the PTB tokenizer splits them (``can't`` -> ``ca n't``; unlike it, ``dog's`` stays
    whole), punctuation dropped (pycocoevalcap keeps a bracket as ``-lrb-`` and a run like ``!!!``).

    Example:
        >>> simple_tokenize("A dog's bark, can't stop (loud)!")
        "a dog's bark ca n't stop loud"
    """
    text = re.sub(r"(\w)n't\b", r"\1 n't", text.lower())
    tokens = re.findall(r"n't|'\w+|\w+(?:[-.']\w+)*|[^\w\s]", text)
    return " ".join(token for token in tokens if re.search(r"\w", token))


def tokenize(texts: Sequence[str], options: CaptionOptions, scores: CaptionScores) -> list[str]:
    """``texts`` tokenized by the PTB jar, or by :func:`simple_tokenize` where it cannot run."""
    try:
        tokenized = java.ptb_tokenize(texts, options.java)
        scores.tokenizer = "ptb"
        return tokenized
    except java.MetricUnavailable as reason:
        logger.warning("PTB tokenization unavailable (%s): the simple tokenizer is used", reason)
        scores.tokenizer = "simple"
        return [simple_tokenize(text) for text in texts]


def _ngram_metrics(hypotheses: list[list[str]], references: list[list[list[str]]], scores: CaptionScores) -> None:
    scores.bleu_stats = np.array([ngrams.bleu_stats(hypothesis, refs)
                                  for hypothesis, refs in zip(hypotheses, references)])
    scores.corpus.update(zip(BLEU, (float(value) for value in ngrams.bleu_from_stats(scores.bleu_stats.sum(0)))))
    scores.per_clip["ROUGE-L"] = [ngrams.rouge_l(hypothesis, refs) for hypothesis, refs in zip(hypotheses, references)]
    cider = ngrams.CiderD(references)
    scores.per_clip["CIDEr-D"] = [cider.score(hypothesis, clip) for clip, hypothesis in enumerate(hypotheses)]
    words = f"coco+{scores.tokenizer}"
    scores.protocols.update({**dict.fromkeys(BLEU, f"bleu/corpus-closest-ref/{words}"),
                             "ROUGE-L": f"rouge-l/max-p-max-r-beta1.2/{words}",
                             "CIDEr-D": f"cider-d/df-all-references/{words}"})


def _jar_metrics(hypotheses: list[str], references: list[list[str]], options: CaptionOptions,
                 scores: CaptionScores) -> None:
    if "meteor" not in options.skip:
        try:
            scores.corpus["METEOR"], _ = java.meteor(hypotheses, references, options.java)
            scores.protocols["METEOR"] = "meteor-1.5/jar-aggregate/coco+ptb"
        except java.MetricUnavailable as reason:
            scores.leave_out(["METEOR"], str(reason))
    if "spice" not in options.skip:
        try:
            scores.per_clip["SPICE"] = java.spice(hypotheses, references, options.java, options.corenlp)
            scores.protocols["SPICE"] = "spice-1.0/jar/coco+ptb"
        except java.MetricUnavailable as reason:
            scores.leave_out(["SPICE", "SPIDEr", "SPIDEr-FL"], str(reason))
    if "SPICE" in scores.per_clip:
        scores.per_clip["SPIDEr"] = [(cider + spice) / 2 for cider, spice
                                     in zip(scores.per_clip["CIDEr-D"], scores.per_clip["SPICE"])]
        scores.protocols["SPIDEr"] = "spider/(cider-d+spice)/2"


def _fense_metrics(texts: Sequence[str], references: Sequence[Sequence[str]], options: CaptionOptions,
                   scores: CaptionScores) -> None:
    from fusion_datasets.eval.classification import load_text_encoder

    try:
        encoder = load_text_encoder(options.sentence_model, options.device, options.batch_size)
    except (UserError, OSError, ValueError) as error:
        scores.leave_out(["SBERT-sim", "FENSE", "SPIDEr-FL"],
                         f"the sentence model {options.sentence_model!r} cannot be loaded: {_first_line(error)}")
        return
    scores.per_clip["SBERT-sim"] = fense.sentence_similarity(encoder, texts, references)
    scores.protocols["SBERT-sim"] = f"sbert-sim/{options.sentence_model}"
    if options.error_detector is None:
        scores.leave_out(["FENSE", "SPIDEr-FL"], "no fluency error detector given (--fense-checker: FENSE's "
                         "echecker_clotho_audiocaps_base.ckpt)")
        return
    try:
        errors = fense.ErrorDetector(options.error_detector, options.error_detector_base, options.device,
                                     options.batch_size)(texts)
    except (UserError, OSError, ValueError, KeyError, RuntimeError) as error:
        scores.leave_out(["FENSE", "SPIDEr-FL"], f"the error detector {options.error_detector!r} cannot be "
                         f"loaded: {_first_line(error)}")
        return
    scores.per_clip["FENSE"] = fense.penalized(scores.per_clip["SBERT-sim"], errors)
    scores.protocols["FENSE"] = f"fense/{options.sentence_model}+echecker-0.9"
    if "SPIDEr" in scores.per_clip:
        scores.per_clip["SPIDEr-FL"] = fense.penalized(scores.per_clip["SPIDEr"], errors)
        scores.protocols["SPIDEr-FL"] = "spider-fl/spider+echecker-0.9"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def score_captions(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                   options: CaptionOptions | None = None) -> CaptionScores:
    """Every metric of ``hypotheses`` (one caption per clip, ``""`` for none) against each clip's
    ``references`` (at least one each). No figure depends on the clips' order or on ``batch_size``.
    """
    options = options or CaptionOptions()
    if len(hypotheses) != len(references) or any(not refs for refs in references):
        raise ValueError("need one hypothesis per clip and at least one reference per clip")
    scores = CaptionScores()
    sizes = [len(refs) for refs in references]
    tokenized = tokenize([*hypotheses, *(text for refs in references for text in refs)], options, scores)
    scores.tokens = tokenized[:len(hypotheses)]
    flat, ends = tokenized[len(hypotheses):], np.cumsum([0, *sizes])
    reference_tokens = [flat[ends[clip]:ends[clip + 1]] for clip in range(len(sizes))]
    scores.vocabulary = len({word for text in scores.tokens for word in text.split()})
    _ngram_metrics([text.split() for text in scores.tokens],
                   [[text.split() for text in refs] for refs in reference_tokens], scores)
    if scores.tokenizer == "ptb":
        _jar_metrics(scores.tokens, reference_tokens, options, scores)
    else:
        scores.leave_out(["METEOR", "SPICE", "SPIDEr", "SPIDEr-FL"], "no Java runtime for the reference jars")
    if "fense" not in options.skip:
        _fense_metrics(list(hypotheses), references, options, scores)
    for key in sorted(options.skip):
        scores.leave_out(SKIPPABLE[key], f"skipped (--skip {key})")
    return scores


def bootstrap_intervals(scores: CaptionScores, n_resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals over ``n_resamples`` resamplings of the clips: of the mean of each per-clip
    metric, and of BLEU recomputed from the drawn clips' statistics. METEOR gets none (its corpus figure is
    the jar's aggregate)."""
    if n_resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need n_resamples >= 1 and 0 < level < 1, got {n_resamples} and {level}")
    samples: dict[str, list[np.ndarray]] = {}
    tables: Mapping[str, np.ndarray] = {name: np.asarray(values, dtype=np.float64)[:, None]
                                        for name, values in scores.per_clip.items()}
    if scores.bleu_stats is not None:
        tables = {**tables, "BLEU": scores.bleu_stats}
    for name, table in tables.items():
        rng, size = np.random.default_rng(seed), len(table)
        for start in range(0, n_resamples, 100):
            draws = rng.integers(0, size, (min(100, n_resamples - start), size))
            weights = np.stack([np.bincount(row, minlength=size) for row in draws]).astype(np.float64)
            totals = weights @ table
            samples.setdefault(name, []).append(ngrams.bleu_from_stats(totals) if name == "BLEU" else totals / size)
    tail = 100 * (1 - level) / 2
    intervals = {}
    for name, parts in samples.items():
        values = np.concatenate(parts)
        low, high = np.percentile(values, tail, axis=0), np.percentile(values, 100 - tail, axis=0)
        names = BLEU if name == "BLEU" else (name,)
        intervals.update({metric: (float(low[index]), float(high[index])) for index, metric in enumerate(names)})
    return intervals
