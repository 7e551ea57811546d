"""BLEU-1..4, ROUGE-L and CIDEr-D over tokenized captions, in pure Python, deterministic.

Each equals pycocoevalcap 1.2's figure on the same tokenized inputs (the formulas are the COCO caption
evaluation's; the code is ours):

- BLEU (Papineni et al.): corpus-level, clipped n-gram counts summed over clips, the brevity penalty from
  the summed hypothesis length and the summed reference length *closest* to each hypothesis (ties: the
  shorter); ``+1e-15`` / ``+1e-9`` in every ratio as pycocoevalcap has them;
- ROUGE-L (Lin): per clip, the LCS precision and recall each maximised over the references, F with
  beta = 1.2; the corpus figure is the mean over clips. An empty hypothesis or reference scores 0 (pycocoevalcap
  splits "" into one empty token, so an empty hypothesis against an empty reference would score 1 there);
- CIDEr-D (Vedantam et al., the COCO variant): TF-IDF n-gram vectors (n = 1..4) whose document frequencies
  count the clips whose references hold the n-gram, over the whole evaluated reference set (never per batch),
  IDF ``log(clips) - log(max(1, df))``; the hypothesis weight is clipped at the reference's; a Gaussian length
  penalty with sigma 6 over pycocoevalcap's "length", the number of bigrams; the mean over n and references,
  times 10; the corpus figure is the mean over clips.

Means are taken with :func:`math.fsum`, so no figure depends on the order of the clips.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

MAX_N = 4
CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2
_TINY, _SMALL = 1e-15, 1e-9
Tokens = Sequence[str]


def ngram_counts(tokens: Tokens, n: int = MAX_N) -> Counter:
    """Counts of every 1- to ``n``-gram of ``tokens`` (tuples), shortest n-grams first."""
    counts: Counter = Counter()
    for size in range(1, n + 1):
        counts.update(tuple(tokens[start:start + size]) for start in range(len(tokens) - size + 1))
    return counts


def bleu_stats(hypothesis: Tokens, references: Sequence[Tokens]) -> np.ndarray:
    """A clip's BLEU statistics: hypothesis length, closest reference length, then the n-gram guesses and
    clipped matches for n = 1..4 (10 numbers; they add up over clips)."""
    length = len(hypothesis)
    closest = min((abs(len(reference) - length), len(reference)) for reference in references)[1]
    most: Counter = Counter()
    for reference in references:
        most |= ngram_counts(reference)
    correct = [0] * MAX_N
    for ngram, count in ngram_counts(hypothesis).items():
        correct[len(ngram) - 1] += min(count, most[ngram])
    guess = [max(0, length - size + 1) for size in range(1, MAX_N + 1)]
    return np.array([length, closest, *guess, *correct], dtype=np.float64)


def bleu_from_stats(totals: np.ndarray) -> np.ndarray:
    """BLEU-1..4 from summed :func:`bleu_stats` (one row per corpus or bootstrap sample: ``(..., 10)``)."""
    totals = np.asarray(totals, dtype=np.float64)
    length, closest = totals[..., 0], totals[..., 1]
    guess, correct = totals[..., 2:2 + MAX_N], totals[..., 2 + MAX_N:]
    products = np.cumprod((correct + _TINY) / (guess + _SMALL), axis=-1)
    scores = products ** (1.0 / np.arange(1, MAX_N + 1))
    ratio = (length + _TINY) / (closest + _SMALL)
    with np.errstate(over="ignore"):
        penalty = np.where(ratio < 1, np.exp(1 - 1 / np.minimum(ratio, 1)), 1.0)
    return scores * penalty[..., None]


def _lcs(first: Tokens, second: Tokens) -> int:
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for position, other in enumerate(second):
            current.append(previous[position] + 1 if token == other else max(previous[position + 1], current[-1]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: Tokens, references: Sequence[Tokens]) -> float:
    """A clip's ROUGE-L F-score (beta 1.2) from the best LCS precision and the best LCS recall."""
    if not hypothesis:
        return 0.0
    common = [_lcs(reference, hypothesis) for reference in references]
    precision = max(lcs / len(hypothesis) for lcs in common)
    recall = max((lcs / len(reference) if reference else 0.0) for lcs, reference in zip(common, references))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + ROUGE_BETA ** 2) * precision * recall / (recall + ROUGE_BETA ** 2 * precision)


class CiderD:
    """CIDEr-D against a fixed set of references: the document frequencies are those of every clip's
    references, so each clip's score is the same whichever clips are scored with it.

    Example:
        >>> cider = CiderD([[["a", "dog", "barks", "twice"]], [["rain", "falls"]]])
        >>> round(cider.score(["a", "dog", "barks", "twice"], 0), 4), cider.score([], 1)
        (10.0, 0.0)
    """

    def __init__(self, references: Sequence[Sequence[Tokens]]) -> None:
        self.references = [[ngram_counts(reference) for reference in clip] for clip in references]
        self.document_frequency: Counter = Counter()
        for clip in self.references:
            self.document_frequency.update({ngram for counts in clip for ngram in counts})
        self.log_clips = math.log(float(len(self.references))) if self.references else 0.0

    def _vector(self, counts: Counter) -> tuple[list[dict], list[float], int]:
        vectors: list[dict] = [{} for _ in range(MAX_N)]
        norms = [0.0] * MAX_N
        for ngram, count in counts.items():
            size = len(ngram) - 1
            weight = float(count) * (self.log_clips - math.log(max(1.0, self.document_frequency[ngram])))
            vectors[size][ngram] = weight
            norms[size] += weight ** 2
        bigrams = sum(count for ngram, count in counts.items() if len(ngram) == 2)
        return vectors, [math.sqrt(norm) for norm in norms], bigrams

    def score(self, hypothesis: Tokens, clip: int) -> float:
        """The CIDEr-D of ``hypothesis`` against the references of clip number ``clip``."""
        vector, norm, length = self._vector(ngram_counts(hypothesis))
        total = np.zeros(MAX_N)
        for reference in self.references[clip]:
            other, other_norm, other_length = self._vector(reference)
            penalty = math.e ** (-(float(length - other_length) ** 2) / (2 * CIDER_SIGMA ** 2))
            values = np.zeros(MAX_N)
            for size in range(MAX_N):
                for ngram, weight in vector[size].items():
                    values[size] += min(weight, other[size].get(ngram, 0.0)) * other[size].get(ngram, 0.0)
                if norm[size] != 0 and other_norm[size] != 0:
                    values[size] /= norm[size] * other_norm[size]
                values[size] *= penalty
            total += values
        return float(np.mean(total) / len(self.references[clip]) * 10.0)


def mean(values: Sequence[float]) -> float:
    """The exactly rounded mean (:func:`math.fsum`): the same whatever the order of ``values``."""
    return math.fsum(values) / len(values) if len(values) else 0.0
