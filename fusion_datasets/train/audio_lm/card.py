"""The model card of a ``train-audio-lm`` adapter: base model, data with fingerprints, recipe, losses, counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_datasets.eval.report import is_count
from fusion_datasets.train.audio_lm.config import TrainAudioLMConfig

_RECIPE = ("preset", "lora_r", "lora_alpha", "lora_dropout", "lora_layers", "train_audio_encoder", "train_projector",
           "train_lm_head", "train_on_inputs", "learning_rate", "lr_scheduler", "warmup_ratio", "weight_decay",
           "epochs", "max_steps", "per_device_batch_size", "gradient_accumulation_steps", "max_seconds", "seed")


def _hub_id(name: str) -> str | None:
    """``name`` when it reads as a Hub id (``org/name``, not a path here)."""
    return name if name.count("/") == 1 and not Path(name).exists() and not name.endswith(".json") else None


def _shown(name: str) -> str:
    """How the card names a model, dataset or benchmark: a Hub id as it is, a local one by its last part
    (the card may be published: it holds no path of this machine)."""
    return _hub_id(name) or f"{Path(name.rstrip('/')).name} (local)"


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _eval_results(evaluation: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """``model-index`` entries of the benchmarks' overall figures (counts left out)."""
    from huggingface_hub import EvalResult

    return [EvalResult(task_type="audio-question-answering", dataset_type=_shown(benchmark),
                       dataset_name=row["benchmark"], metric_type=row["metric"], metric_value=row["value"])
            for benchmark, rows in evaluation.items() for row in rows if not is_count(row)]


def _eval_section(evaluation: dict[str, list[dict[str, Any]]]) -> str:
    if not evaluation:
        return ""
    rows = "\n".join(f"| {_shown(benchmark)} | {row['metric']} | "
                     f"{format(row['value'], 'g' if is_count(row) else '.2f')} | {row['n']} |"
                     for benchmark, rows in evaluation.items() for row in rows)
    return (f"\n## Evaluation\n\nAnswered by this adapter and scored as `fusion-datasets eval qa` scores them "
            f"(files in `eval/`).\n\n| benchmark | metric | value | n |\n|---|---|---|---|\n{rows}\n")


def model_card(config: TrainAudioLMConfig, report: dict[str, Any]) -> str:
    """The README of the output folder: YAML metadata (base model, datasets, peft, ``model-index`` of the
    benchmarks' figures) and what was trained how."""
    from huggingface_hub import ModelCardData

    datasets = [hub_id for hub_id in (_hub_id(source["name"]) for source in report["sources"]) if hub_id]
    results = _eval_results(report.get("eval", {}))
    data = ModelCardData(model_name=Path(config.output).name if results else None, base_model=_hub_id(config.model),
                         datasets=datasets or None, library_name="peft", pipeline_tag="audio-text-to-text",
                         eval_results=results or None,
                         tags=["audio", "lora", "audio-captioning", "audio-question-answering", "fusion-datasets"])
    sources = "\n".join(f"| {_shown(source['name'])} | {source['kind']} | `{source['fingerprint']}` | "
                        f"{source['weight']:g} | {source['rows']} |" for source in report["sources"])
    skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(report["skipped"].items())) or "none"
    recipe = "\n".join(f"| {key} | `{report['settings'][key]}` |" for key in _RECIPE)
    return (
        f"---\n{data.to_yaml()}\n---\n\n# LoRA adapter for {_shown(config.model)}\n\n"
        f"Fine-tuned with `fusion-datasets train-audio-lm` ({report['family']}) on instruction → answer rows "
        f"about audio clips: each caption as the answer to a describing instruction, each QA pair as it is.\n\n"
        f"Use it: `fusion-datasets eval predict --model {Path(config.output).name} --benchmark BENCHMARK --output "
        f"preds.jsonl`, or as the sound expert's `model` in a run config.\n\n"
        f"## Data\n\n| source | kind | fingerprint | weight | rows |\n|---|---|---|---|---|\n{sources}\n\n"
        f"Rows trained on: {report['rows']['train']}; held out (by clip): {report['rows']['held_out']}. "
        f"Left out: {skipped}. Clips cut to {report['max_seconds']:g} s: {report['clips_cut']}.\n\n"
        f"## Training\n\n| setting | value |\n|---|---|\n{recipe}\n\n"
        f"Steps: {report['steps']}. Loss: {_figure(report['train_loss'])} over the run, "
        f"{_figure(report['final_loss'])} at the last logged step; held-out loss: {_figure(report['eval_loss'])}.\n"
        + _eval_section(report.get("eval", {}))
    )
