"""Closed-ended and multiple-choice audio QA accuracy, as an ``evaluate`` module.

A thin wrapper over :mod:`fusion_datasets.eval.answers`, which defines the normalisation and the option
mapping (``fusion-datasets eval qa`` adds the LLM judge for open-ended answers, which this module does not run).
One import per line: evaluate's import scanner misreads ``import a, b``.
"""

import datasets
import evaluate

from fusion_datasets.eval.answers import choose_option, closed_correct

_DESCRIPTION = """
Accuracy of an audio model's answers. Closed-ended (Clotho-AQA): normalised exact match (case,
punctuation, articles, number words as digits; a yes/no answer is judged by its first word) to the
reference, or to any of a question's references (its annotators' answers) when given a list. Multiple
choice (AIR-Bench Foundation, when `options` is given): each answer is mapped to one option (its exact
text, its letter, the one option it names, else the most similar option); an answer mapped to no option
is wrong and counted as unmappable, never guessed.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: the model's answers.
    references: the reference answers, a string or (closed-ended) a list of a question's answers, any of
        which is right (multiple choice: the right option's text or letter).
    options: for multiple choice, each question's options (a keyword argument).
Returns:
    accuracy (a percentage), and for multiple choice unmappable (a count).
Example:
    >>> metric = evaluate.load(module_path("audio_qa"))  # fusion_datasets.evaluate_modules  # doctest: +SKIP
    >>> metric.compute(predictions=["Yes.", "two"], references=["yes", "2"])  # doctest: +SKIP
    {'accuracy': 100.0}
"""

_CITATION = """
@inproceedings{lipping2022clothoaqa,
  title = {Clotho-AQA: A Crowdsourced Dataset for Audio Question Answering},
  author = {Lipping, Samuel and Sudarsanam, Parthasaarathy and Drossos, Konstantinos and Virtanen, Tuomas},
  booktitle = {EUSIPCO},
  year = {2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AudioQA(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": references})
                for references in (datasets.Value("string"), datasets.Sequence(datasets.Value("string")))
            ],
        )

    def _compute(self, predictions, references, options=None):
        if options is None:
            correct = [closed_correct(answer, right) for answer, right in zip(predictions, references)]
            return {"accuracy": 100 * sum(correct) / max(len(correct), 1)}
        chosen = [choose_option(prediction, choices) for prediction, choices in zip(predictions, options)]
        expected = [choose_option(reference, choices) for reference, choices in zip(references, options)]
        correct = [index is not None and index == right for index, right in zip(chosen, expected)]
        return {"accuracy": 100 * sum(correct) / max(len(correct), 1),
                "unmappable": sum(index is None for index in chosen)}
