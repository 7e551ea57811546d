"""The model card of a fine-tuned CLAP (with its retrieval results as ``model-index``) and its Hub push.

The token is huggingface_hub's own business (``HF_TOKEN`` or ``hf auth login``): it is never passed,
logged or written here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusion_datasets.eval.report import report_markdown, with_overall
from fusion_datasets.eval.retrieval_eval import retrieval_report_rows
from fusion_datasets.files import write_text_atomically
from fusion_datasets.hub.push import HubPublisher
from fusion_datasets.train.config import TrainClapConfig
from fusion_datasets.train.data import parse_dataset_spec

if TYPE_CHECKING:
    from huggingface_hub import HfApi

logger = logging.getLogger(__name__)

_CARD_METRICS = ("R@1", "R@5", "R@10", "mAP@10")
_TASKS = {"t2a": "text-to-audio retrieval", "a2t": "audio-to-text retrieval"}


def _hub_id(spec: str) -> str | None:
    name, _ = parse_dataset_spec(spec)
    return name if name.count("/") == 1 and not Path(name).exists() else None


def model_card(repo_id: str, config: TrainClapConfig, benchmark: str, evaluation: dict[str, Any]) -> str:
    """The README of ``repo_id``: YAML metadata with ``model-index`` (R@1/5/10 and mAP@10 both ways),
    the recipe, and the retrieval table of ``evaluation`` (an ``eval_results.json`` entry)."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics = evaluation["metrics"]
    results = [
        EvalResult(
            task_type=_TASKS[task].replace(" ", "-"),
            task_name=_TASKS[task],
            dataset_type=config.eval,
            dataset_name=benchmark,
            dataset_split=config.eval_split,
            metric_type=metric.lower(),
            metric_name=f"{task.upper()} {metric}",
            metric_value=round(metrics[f"{task}_{metric}"], 2),
        )
        for task in _TASKS
        for metric in _CARD_METRICS
    ]
    datasets = [name for name in map(_hub_id, config.train) if name]
    data = ModelCardData(
        model_name=repo_id,
        base_model=_hub_id(config.model),
        datasets=datasets or None,
        tags=["clap", "audio", "audio-text-retrieval", "fusion-datasets"],
        pipeline_tag="zero-shot-audio-classification",
        library_name="transformers",
        eval_results=results,
    )
    report = {"model": repo_id, "results": with_overall(retrieval_report_rows(benchmark, evaluation))}
    recipe = "\n".join(
        f"- {key}: {getattr(config, key)}"
        for key in ("learning_rate", "batch_size", "epochs", "weight_decay", "warmup_ratio", "seed")
    )
    return (
        f"---\n{data.to_yaml()}\n---\n\n# {repo_id}\n\n"
        f"A CLAP model fine-tuned from `{config.model}` with contrastive training (symmetric InfoNCE, "
        f"learnable temperature, AdamW, cosine schedule after warm-up) on "
        f"{', '.join(f'`{spec}`' for spec in config.train)}, "
        f"with `fusion-datasets train-clap`. The checkpoint is the epoch {evaluation['epoch']} one, the best "
        f"by T2A R@1 + A2T R@1 on `{config.eval}`.\n\n## Training\n\n{recipe}\n\n## Retrieval results\n\n"
        + report_markdown(report).split("\n", 2)[2]
    )


def push_model(
    output: str | Path,
    config: TrainClapConfig,
    benchmark: str,
    evaluation: dict[str, Any],
    api: HfApi | None = None,
) -> str:
    """Write ``output/best/README.md`` (:func:`model_card`) and upload ``output/best`` to the model repository
    ``config.push_to_hub`` (created if needed); returns the repository URL.

    Transient Hub errors are retried; others raise :class:`~fusion_datasets.hub.push.HubError`, tokens scrubbed.
    """
    repo_id = str(config.push_to_hub)
    folder = Path(output) / "best"
    write_text_atomically(folder / "README.md", model_card(repo_id, config, benchmark, evaluation))
    publisher = HubPublisher(repo_id, config.private, api, repo_type="model")
    publisher.call(
        "upload the best checkpoint to",
        publisher.api.upload_folder,
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        commit_message=f"fine-tuned CLAP, epoch {evaluation['epoch']}",
    )
    logger.info("pushed %s to %s", folder, publisher.url)
    return publisher.url
