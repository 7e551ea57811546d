"""Zero-shot audio classification from captions, as an ``evaluate`` module.

A thin wrapper over :func:`fusion_datasets.eval.classification.classify_captions`: each caption and
each label's prompt ("sound of <label>") are embedded by a text encoder and compared by cosine.
One import per line: evaluate's import scanner misreads ``import a, b``.
"""

import datasets
import evaluate

from fusion_datasets.eval.classification import (
    DEFAULT_TEXT_ENCODER,
    LABEL_TEMPLATE,
    classify_captions,
    load_text_encoder,
)

_DESCRIPTION = """
Accuracy (the label most similar to the caption is one of the clip's labels) and mAP (the mean over
labels of the average precision of the caption-label similarities; multi-label for FSD50K), as
percentages. A clip without a caption (None or empty) is wrong, and in mAP never credited; coverage is the
percentage of clips with one. The text encoder is a sentence-transformers model (mean pooling) or a CLAP's
text tower.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one caption per clip (the audio model's description; None where it gave none).
    references: each clip's labels (a list: several for a multi-label benchmark).
    vocabulary: every label of the benchmark, in order (a keyword argument).
    text_encoder: a Hub id or folder (default sentence-transformers/all-MiniLM-L6-v2).
    template: the text each label is embedded as (default "sound of {label}").
    folds: each clip's cross-validation fold (ESC-50, UrbanSound8K), or None: with folds, each fold's clips
        are scored alone and accuracy and mAP are the mean over folds.
Returns:
    accuracy, mAP and coverage; with folds also per_fold, each fold's accuracy and mAP.
Example:
    >>> metric = evaluate.load(module_path("audio_classification"))  # doctest: +SKIP
    >>> metric.compute(predictions=["a dog barks"], references=[["dog"]],
    ...                vocabulary=["dog", "rain"])  # doctest: +SKIP
"""

_CITATION = """
@article{chen2025fusionaudio,
  title = {FusionAudio-1.2M: Towards Fine-grained Audio Captioning with Multimodal Contextual Fusion},
  author = {Chen, Shunian and Xie, Xinyuan and Chen, Zheshu and others},
  journal = {arXiv:2506.01111},
  year = {2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AudioClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.List(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, vocabulary, text_encoder=DEFAULT_TEXT_ENCODER,
                 template=LABEL_TEMPLATE, folds=None):
        encoder = load_text_encoder(text_encoder)
        return classify_captions(predictions, references, vocabulary, encoder, template, folds)
