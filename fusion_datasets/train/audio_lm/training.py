"""``train-audio-lm``: LoRA fine-tuning of an audio LM with transformers ``Trainer``, resumable.

The output folder holds ``train_config.yaml`` (the settings, written first: a rerun with other settings is
refused), ``checkpoints/`` (``Trainer``'s, every ``save_steps``: a rerun resumes from the newest complete one
and ends with the weights an uninterrupted run would have), then the adapter with the processor, the model
card (``README.md``), ``train_report.json`` and, with ``merge``, ``merged/`` (the base with the adapter in it).
Several GPUs: ``accelerate launch -m fusion_datasets.cli train-audio-lm ...`` (or ``torchrun``).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from fusion_datasets.config import ConfigError, to_mapping
from fusion_datasets.errors import UserError
from fusion_datasets.files import write_text_atomically
from fusion_datasets.loading import loading_model
from fusion_datasets.train.audio_lm.card import model_card
from fusion_datasets.train.audio_lm.collate import AudioLMCollator
from fusion_datasets.train.audio_lm.config import TrainAudioLMConfig, parse_source
from fusion_datasets.train.audio_lm.data import ClipReader, InstructionRows, check_examples, gather_examples
from fusion_datasets.train.audio_lm.model import load_base, with_adapter
from fusion_datasets.train.loop import resolve_mixed_precision

logger = logging.getLogger(__name__)

TRAIN_CONFIG = "train_config.yaml"
TRAIN_REPORT = "train_report.json"
CHECKPOINTS = "checkpoints"
MERGED = "merged"
_TRAINER_STATE = "trainer_state.json"  # written last into a checkpoint: the mark of a complete one


def _claim(output: Path, config: TrainAudioLMConfig) -> None:
    """Write ``train_config.yaml``, or check that the one there (a run to resume) has the same settings."""
    path = output / TRAIN_CONFIG
    if path.is_file():
        before = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        changed = sorted(key for key, value in config.training_settings().items() if before.get(key) != value)
        if changed:
            raise ConfigError(
                f"{output} holds a training run with other settings ({', '.join(changed)}): rerun with the same "
                f"settings to resume it, or give another --output")
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, yaml.safe_dump(to_mapping(config), sort_keys=False))


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint under ``folder``; newer ones a kill cut short are removed."""
    steps = sorted(((int(path.name.rpartition("-")[2]), path) for path in folder.glob("checkpoint-*")
                    if path.name.rpartition("-")[2].isdigit()), reverse=True)
    for _, path in steps:
        if (path / _TRAINER_STATE).is_file():
            return str(path)
        logger.warning("%s was cut off while being saved; removed", path)
        shutil.rmtree(path)
    return None


def _arguments(config: TrainAudioLMConfig, output: Path, held_out: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    precision = resolve_mixed_precision(config.mixed_precision)
    return TrainingArguments(
        output_dir=str(output / CHECKPOINTS),
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # below 1: a fraction of the steps
        weight_decay=config.weight_decay,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=config.activation_checkpointing,
        eval_strategy="epoch" if held_out else "no",
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.keep_checkpoints,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=config.num_workers,
        remove_unused_columns=False,  # the collator's rows are not the model's arguments
        label_names=["labels"],
        report_to="none",
    )


def train_audio_lm(config: TrainAudioLMConfig) -> dict[str, Any]:
    """Fine-tune ``config.model`` on ``config.data`` into ``config.output``; returns the training report."""
    import torch
    from transformers import Trainer, set_seed

    output = Path(config.output)
    _claim(output, config)
    dtype = torch.bfloat16 if resolve_mixed_precision(config.mixed_precision) == "bf16" else torch.float32
    with loading_model(config.model):
        base = load_base(config, dtype)
    family = base.family
    examples = gather_examples([parse_source(spec) for spec in config.data], config.seed, config.eval_fraction)
    reader = ClipReader(examples.sources, base.sampling_rate, min(config.max_seconds, family.max_seconds))
    collator = AudioLMCollator(base.processor, family, base.sampling_rate, config.train_on_inputs)
    train_rows, train_found = check_examples(examples.train, reader, collator.check, config.num_workers)
    held_rows, held_found = check_examples(examples.held_out, reader, collator.check, config.num_workers)
    if train_rows.num_rows == 0:
        raise UserError(f"no training rows are left: {dict(train_found.skipped)}; see the problems above")
    set_seed(config.seed)  # the adapter's initial weights
    trainer = Trainer(
        model=with_adapter(base, config),
        args=_arguments(config, output, held_rows.num_rows > 0),
        train_dataset=InstructionRows(train_rows, reader),
        eval_dataset=InstructionRows(held_rows, reader) if held_rows.num_rows else None,
        data_collator=collator,
    )
    trained = trainer.train(resume_from_checkpoint=last_checkpoint(output / CHECKPOINTS))
    evaluation = trainer.evaluate() if held_rows.num_rows else {}
    skipped = sum((source.skipped for source in examples.sources), Counter())
    report = {
        "model": config.model,
        "family": type(base.writer).__name__,
        "preset": config.preset,
        "sources": [{"name": source.name, "kind": source.kind, "fingerprint": source.fingerprint,
                     "weight": source.weight, "rows": len(source.rows["row"])} for source in examples.sources],
        "rows": {"train": train_rows.num_rows, "held_out": held_rows.num_rows},
        "skipped": dict(skipped + train_found.skipped + held_found.skipped),
        "problems": [{**problem, "source": examples.sources[problem["source"]].name}
                     for problem in train_found.problems + held_found.problems],
        "clips_cut": train_found.cut + held_found.cut,
        "max_seconds": reader.limit / reader.sampling_rate,
        "steps": trainer.state.global_step,
        "samples_per_second": trained.metrics.get("train_samples_per_second"),
        "train_loss": trained.training_loss,
        "final_loss": next((entry["loss"] for entry in reversed(trainer.state.log_history) if "loss" in entry), None),
        "eval_loss": evaluation.get("eval_loss"),
        "settings": to_mapping(config),
    }
    if trainer.is_world_process_zero():
        _save(trainer.model, base, config, output)
        report["eval"] = {benchmark: _evaluate(config, output, benchmark) for benchmark in config.eval}
        write_text_atomically(output / "README.md", model_card(config, report))
        write_text_atomically(output / TRAIN_REPORT, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report


def _save(model: Any, base: Any, config: TrainAudioLMConfig, output: Path) -> None:
    """The adapter and its processor (left-padded, for generation); the merged model in ``merged/``."""
    base.processor.tokenizer.padding_side = "left"
    model.save_pretrained(output)
    base.processor.save_pretrained(output)
    if config.merge:
        from transformers.utils import cached_file

        model.merge_and_unload()  # in place: the whole model's writer now holds the adapter
        base.whole.save_pretrained(output / MERGED)
        base.processor.save_pretrained(output / MERGED)
        for name in base.family.extra_files:
            shutil.copyfile(cached_file(config.model, name, revision=config.revision), output / MERGED / name)


def _evaluate(config: TrainAudioLMConfig, output: Path, benchmark: str) -> list[dict[str, Any]]:
    """The trained model's answers to the QA ``benchmark`` scored as ``eval qa`` scores them (files in
    ``eval/<benchmark>/``); returns the report's overall rows."""
    from fusion_datasets.eval.predict import benchmark_name, run_predict
    from fusion_datasets.eval.qa import run_qa_eval

    folder = output / "eval" / benchmark_name(benchmark)
    predictions = folder / "predictions.jsonl"
    run_predict(str(output), benchmark, predictions, max_new_tokens=config.eval_max_new_tokens,
                max_seconds=config.max_seconds)
    scored = run_qa_eval(predictions, benchmark, folder, model=Path(config.output).name)
    return [row for row in scored["results"] if row["task"] == "overall"]
