"""``eval classification``: zero-shot classification from an audio model's captions, by text similarity.

Each clip's caption and each label's prompt ("sound of <label>") are embedded by a text encoder; the
cosine similarities are the clip's class scores. Reported: accuracy (the best-scoring label is one of
the clip's labels) and mAP (the mean over classes with a positive clip of the average precision of their
scores; FSD50K's multi-label mAP). A clip without a caption is wrong: never the right label in accuracy,
and in mAP ranked below every captioned clip and never credited (a positive without a caption adds
precision 0); ``coverage`` is the percentage of clips with a caption. The headline figures are per clip
over the whole benchmark (micro). A benchmark with a ``fold`` column (ESC-50, UrbanSound8K) also gets each
fold's figures and their mean over folds (each fold counts once, whatever its size: its ``n`` is the number
of folds), each row's ``protocol`` saying which. The caption is embedded as it is, or in FusionAudio's text
form (``"sound of " + caption.lower()``, ``text_form="fusionaudio"``).

Predictions that name no clip of the benchmark are refused (a wrong file); a coverage below
:data:`LOW_COVERAGE` and folds of very different or tiny sizes are warned about.

The text encoder is a transformers checkpoint: a sentence-transformers model (mean pooling over the
tokens, as those models pool) or a CLAP (its text tower).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion_datasets import runtime
from fusion_datasets.clap.base import in_batches
from fusion_datasets.errors import UserError
from fusion_datasets.eval.predict import (
    benchmark_name,
    load_benchmark,
    model_name,
    read_predictions,
    recorded_settings,
)
from fusion_datasets.eval.report import OVERALL, benchmark_extent, write_model_index, write_report
from fusion_datasets.loading import loading_model

logger = logging.getLogger(__name__)

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
LABEL_TEMPLATE = "sound of {label}"
# how a caption is embedded: as it is, or as FusionAudio's evaluation writes it
TEXT_FORMS: dict[str, Callable[[str], str]] = {"caption": str,
                                               "fusionaudio": lambda caption: "sound of " + caption.lower()}
LOW_COVERAGE = 90.0  # percent of clips with a caption below which a report is warned about
MIN_FOLD_CLIPS = 5  # a fold with fewer clips gives a mean over folds little to stand on
TextEncoder = Callable[[Sequence[str]], np.ndarray]  # texts -> (len, dim) unit rows


class _MeanPooledEncoder:
    """A transformers text model whose sentence embedding is the mean of its token states."""

    def __init__(self, model: str, device: str, batch_size: int) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(device).eval()
        self.device, self.batch_size = device, batch_size

    def _batch(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        tokens = tokens.to(self.device)
        with torch.inference_mode():
            states = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
        return ((states * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return in_batches(list(texts), self.batch_size, self._batch, int(self.model.config.hidden_size))


def load_text_encoder(model: str = DEFAULT_TEXT_ENCODER, device: str | None = None,
                      batch_size: int = 64) -> TextEncoder:
    """The text encoder ``model`` (a Hub id or folder), loaded once per process; one that cannot be loaded
    is a UserError naming it."""
    from transformers import AutoConfig

    device = runtime.resolve_device(device)

    def load() -> TextEncoder:
        if AutoConfig.from_pretrained(model).model_type == "clap":
            from fusion_datasets.clap.embed import TransformersClap

            return TransformersClap(model, device=device, batch_size=batch_size).embed_text
        return _MeanPooledEncoder(model, device, batch_size)

    with loading_model(model):
        return runtime.cached_model(("text-encoder", model, device, batch_size), load)


def average_precision(scores: np.ndarray, positives: np.ndarray, answered: np.ndarray | None = None) -> float:
    """The average precision of ``scores`` for the boolean ``positives``, as scikit-learn computes it.

    Tied items count as one threshold: each tied positive gets the precision at the end of its tie.
    Items not ``answered`` (boolean) rank below every answered one and are never reached: a positive among
    them adds precision 0.
    """
    total = int(positives.sum())
    if answered is not None:
        scores, positives = scores[answered], positives[answered]
    if not positives.any():
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ranked, hits = -scores[order], positives[order]
    ranks = np.searchsorted(ranked, ranked, side="right")  # the items scoring at least as high as each
    precision = np.cumsum(hits)[ranks - 1] / ranks
    return float(precision[hits].sum() / total)


def classification_metrics(scores: np.ndarray, targets: np.ndarray,
                           answered: np.ndarray | None = None) -> dict[str, float]:
    """``accuracy`` (the top class is a target) and ``mAP`` over classes with a positive, as percentages;
    clips not ``answered`` (boolean) are wrong and never credited.

    Example:
        >>> scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.6], [0.1, 0.3, 0.2]])
        >>> targets = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=bool)
        >>> metrics = classification_metrics(scores, targets)
        >>> round(metrics["accuracy"], 2), round(metrics["mAP"], 2)
        (66.67, 83.33)
    """
    answered = np.ones(len(scores), dtype=bool) if answered is None else answered
    accuracy = (targets[np.arange(len(scores)), scores.argmax(axis=1)] & answered).mean()
    present = np.flatnonzero(targets.any(axis=0))
    precisions = [average_precision(scores[:, label], targets[:, label], answered) for label in present]
    return {"accuracy": 100 * float(accuracy), "mAP": 100 * float(np.mean(precisions))}


def caption_scores(captions: Sequence[str | None], labels: Sequence[str], encoder: TextEncoder,
                   template: str = LABEL_TEMPLATE, text_form: str = "caption") -> np.ndarray:
    """``(clips, labels)`` cosines of each caption (in ``text_form``) with each label's prompt; -1 for a clip
    without one."""
    label_embeds = encoder([template.format(label=label) for label in labels])
    given = [row for row, caption in enumerate(captions) if caption and caption.strip()]
    scores = np.full((len(captions), len(labels)), -1.0, dtype=np.float32)
    if given:
        scores[given] = encoder([TEXT_FORMS[text_form](captions[row]) for row in given]) @ label_embeds.T
    return scores


def fold_metrics(scores: np.ndarray, targets: np.ndarray, folds: Sequence[int],
                 answered: np.ndarray | None = None) -> dict[int, dict[str, float]]:
    """:func:`classification_metrics` of each fold's clips alone, by fold.

    Example:
        >>> scores = np.array([[0.9, 0.1], [0.2, 0.7], [0.6, 0.4]])
        >>> targets = np.array([[1, 0], [0, 1], [0, 1]], dtype=bool)
        >>> {fold: metrics["accuracy"] for fold, metrics in fold_metrics(scores, targets, [1, 2, 2]).items()}
        {1: 100.0, 2: 50.0}
    """
    folds = np.asarray(folds)
    answered = np.ones(len(scores), dtype=bool) if answered is None else answered
    return {int(fold): classification_metrics(scores[folds == fold], targets[folds == fold], answered[folds == fold])
            for fold in np.unique(folds)}


def mean_over_folds(per_fold: dict[int, dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over folds (each fold counts once, whatever its size)."""
    return {metric: float(np.mean([values[metric] for values in per_fold.values()]))
            for metric in next(iter(per_fold.values()))}


def classify_captions(captions: Sequence[str | None], references: Sequence[Sequence[str]],
                      vocabulary: Sequence[str], encoder: TextEncoder, template: str = LABEL_TEMPLATE,
                      folds: Sequence[int] | None = None, text_form: str = "caption") -> dict[str, Any]:
    """:func:`classification_metrics` of ``captions`` against each clip's reference labels over all clips (a
    clip without a caption is wrong), and ``coverage``, the percentage of clips with a caption.

    With ``folds`` (one per clip), ``per_fold`` holds each fold's metrics and ``fold_mean`` their mean.
    """
    index = {label: position for position, label in enumerate(vocabulary)}
    unknown = sorted({label for labels in references for label in labels} - set(index))
    if unknown:
        raise ValueError(f"labels not in the vocabulary: {', '.join(unknown[:10])}")
    targets = np.zeros((len(captions), len(vocabulary)), dtype=bool)
    for row, labels in enumerate(references):
        targets[row, [index[label] for label in labels]] = True
    scores = caption_scores(captions, vocabulary, encoder, template, text_form)
    answered = np.array([bool(caption and caption.strip()) for caption in captions], dtype=bool)
    result = {**classification_metrics(scores, targets, answered),
              "coverage": 100 * float(answered.mean()) if len(answered) else 0.0}
    if folds is not None:
        result["per_fold"] = fold_metrics(scores, targets, folds, answered)
        result["fold_mean"] = mean_over_folds(result["per_fold"])
    return result


def read_vocabulary_labels(benchmark: str | Path) -> list[str]:
    """The labels of a built benchmark's ``vocabulary.csv`` (``index,label``), in order."""
    from fusion_datasets.builders.classification import read_vocabulary
    from fusion_datasets.builders.report import BuildReport

    path = Path(benchmark) / "vocabulary.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the benchmark with `fusion-datasets build`")
    return [label for _, label in read_vocabulary(path, BuildReport(str(path)))]


def _fold_warnings(benchmark: str | Path, folds: Sequence[int]) -> None:
    """Warn when the folds' sizes differ much (their mean weighs a small fold like a big one) or one is tiny."""
    sizes = {int(fold): count for fold, count in zip(*np.unique(np.asarray(folds), return_counts=True))}
    smallest, largest = min(sizes.values()), max(sizes.values())
    if smallest < MIN_FOLD_CLIPS or largest > 2 * smallest:
        logger.warning("%s: folds of %s clips: their mean weighs each fold alike; the per-clip figure is the "
                       "headline", benchmark, ", ".join(f"{fold}: {size}" for fold, size in sizes.items()))


def _matched_captions(predictions: str | Path, benchmark: str | Path, audio_ids: Sequence[str]) -> list[str | None]:
    """Each clip's caption from ``predictions`` (by ``audio_id``); refuses predictions that name no clip."""
    rows, skipped = read_predictions(predictions)
    if skipped:
        logger.warning("%s: %d predictions skipped (%s)", predictions, sum(skipped.values()), dict(skipped))
    by_audio: dict[str, str | None] = {}
    for row in rows:
        by_audio.setdefault(row.audio_id, row.text)
    if not any(audio_id in by_audio for audio_id in audio_ids):
        example = f" (the predictions name {rows[0].audio_id!r}, the benchmark {audio_ids[0]!r})" if rows else ""
        raise UserError(f"{predictions}: none of its {len(rows)} predictions names one of the {len(audio_ids)} clips "
                        f"of {benchmark}{example}: are they this benchmark's predictions?")
    return [by_audio.get(audio_id) for audio_id in audio_ids]


def run_classification_eval(
    predictions: str | Path,
    benchmark: str | Path,
    output: str | Path,
    *,
    model: str | None = None,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    template: str = LABEL_TEMPLATE,
    text_form: str = "caption",
    device: str | None = None,
    split: str = "test",
    config: str | None = None,
    model_index: str | Path | None = None,
) -> dict[str, Any]:
    """``fusion-datasets eval classification``: map ``predictions`` (captions) to the benchmark's vocabulary.

    Captions come from a predictions file (``prediction``, ``output`` or ``caption``), matched to clips
    by ``audio_id``. The headline is per clip over the benchmark; a benchmark with a ``fold`` column also
    gets each fold and the mean over folds. Writes ``report.json`` / ``report.md`` into ``output``.
    """
    if text_form not in TEXT_FORMS:
        raise UserError(f"text_form: {text_form!r} is not one of {', '.join(TEXT_FORMS)}")
    name = benchmark_name(benchmark)
    table = load_benchmark(benchmark, split, config)
    columns = table.select_columns([c for c in ("audio_id", "labels", "fold") if c in table.column_names])[:]
    folds = columns.get("fold")
    if folds is not None and None in folds:
        logger.warning("%s: %d clips have no fold: scored as one set", benchmark, folds.count(None))
        folds = None
    captions = _matched_captions(predictions, benchmark, columns["audio_id"])
    encoder = load_text_encoder(text_encoder, device)
    vocabulary = read_vocabulary_labels(benchmark)
    metrics = classify_captions(captions, columns["labels"], vocabulary, encoder, template, folds, text_form)
    size, per_fold, coverage = len(captions), metrics.pop("per_fold", {}), metrics.pop("coverage")
    fold_mean = metrics.pop("fold_mean", {})
    if coverage < LOW_COVERAGE:
        logger.warning("%s: only %.1f%% of the %d clips have a caption in %s: the others count as wrong",
                       benchmark, coverage, size, predictions)
    if per_fold:
        _fold_warnings(benchmark, folds)
    form = f"zero-shot/{text_form}-text"
    results = [{"benchmark": name, "task": OVERALL, "metric": metric, "value": value, "n": size,
                "protocol": f"{form}/all-clips"} for metric, value in metrics.items()]
    results += [{"benchmark": name, "task": OVERALL, "metric": metric, "value": value, "n": len(per_fold),
                 "protocol": f"{form}/mean-over-{len(per_fold)}-folds"} for metric, value in fold_mean.items()]
    results += [{"benchmark": name, "task": f"fold{fold}", "metric": metric, "value": value,
                 "n": folds.count(fold), "protocol": f"{form}/one-fold"}
                for fold, values in per_fold.items() for metric, value in values.items()]
    results.append({"benchmark": name, "task": OVERALL, "metric": "coverage", "value": coverage, "n": size,
                    "protocol": f"{form}/all-clips"})
    settings = {"text_encoder": text_encoder, "template": template, "text_form": text_form, "split": split}
    if recorded_settings(predictions):
        settings["predict"] = recorded_settings(predictions)
    report = write_report(output, model_name(predictions, model), results, settings=settings,
                          extents={name: benchmark_extent(benchmark, size)})
    if model_index:
        write_model_index(model_index, report, "audio-classification", skip_metrics=["coverage"])
    return report
