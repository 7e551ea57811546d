"""Evaluation: retrieval, QA and classification metrics under their reference protocols, and the report
every eval command writes."""

from fusion_datasets.eval.report import report_markdown, with_overall, write_report
from fusion_datasets.eval.retrieval import (
    RETRIEVAL_KEYS,
    RetrievalRanks,
    bootstrap_intervals,
    retrieval_confidence_intervals,
    retrieval_metrics,
    retrieval_ranks,
    summarize_ranks,
)
from fusion_datasets.eval.retrieval_eval import evaluate_retrieval, retrieval_report_rows, run_retrieval_eval

__all__ = [
    "RETRIEVAL_KEYS",
    "RetrievalRanks",
    "bootstrap_intervals",
    "evaluate_retrieval",
    "report_markdown",
    "retrieval_confidence_intervals",
    "retrieval_metrics",
    "retrieval_ranks",
    "retrieval_report_rows",
    "run_retrieval_eval",
    "summarize_ranks",
    "with_overall",
    "write_report",
]
