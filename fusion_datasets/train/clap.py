"""``train_clap``: contrastive fine-tuning of a transformers ``ClapModel`` with ``accelerate``.

The parts: :mod:`~fusion_datasets.train.data` (clips and batches), :mod:`~fusion_datasets.train.loop`
(the steps), :mod:`~fusion_datasets.train.checkpoints` (the loop's state, saved and resumed) and
:mod:`~fusion_datasets.train.evaluation` (retrieval after each epoch). The output folder holds:

- ``checkpoints/step-NNNNNNNN/``: ``accelerator.save_state`` plus ``training_state.json``, every
  ``save_every_steps`` optimizer steps and at the end; a rerun resumes from the latest one, skipping
  the batches its epoch already did;
- ``train_log.jsonl``: one line per optimizer step (loss, learning rate, logit scales, logits shape);
- ``eval_results.json``: retrieval metrics after each epoch (epoch 0: the model before training);
- ``best/``: the epoch with the highest ``t2a_R@1 + a2t_R@1`` (``save_pretrained``, model and processor),
  and ``report.json`` / ``report.md`` with its retrieval table;
- ``train_stats.json``: steps, clips seen, undecodable clips (each skipped and listed, never fatal).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_datasets.config import to_mapping
from fusion_datasets.eval.report import write_report
from fusion_datasets.eval.retrieval_eval import retrieval_report_rows
from fusion_datasets.files import write_text_atomically
from fusion_datasets.train.config import PRESETS, TrainClapConfig, load_train_config
from fusion_datasets.train.evaluation import EpochEvaluations, summary
from fusion_datasets.train.loop import TrainingLoop

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "TrainClapConfig", "TrainClapResult", "load_train_config", "train_clap"]


@dataclass(frozen=True)
class TrainClapResult:
    """What a ``train_clap`` run did: steps, epochs, where it resumed, the best epoch and skipped clips."""

    output: Path
    steps: int
    epochs_completed: int
    resumed_from_step: int | None
    best: dict[str, Any] | None
    skipped_clips: int


def train_clap(config: TrainClapConfig) -> TrainClapResult:
    """Fine-tune ``config.model`` on ``config.train``, evaluating on ``config.eval`` after each epoch.

    Rerunning with the same output folder resumes from its latest checkpoint. See the module docstring
    for what the output folder holds.
    """
    loop = TrainingLoop(config)
    evaluations = EpochEvaluations(config, loop.accelerator, loop.processor)
    resumed = loop.resume()
    if resumed is not None:
        evaluations.restore(resumed)
    output, accelerator = Path(config.output), loop.accelerator
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        write_text_atomically(output / "train_config.json", json.dumps(to_mapping(config), indent=2))
    logger.info(
        "global batch %d = %d per device x %d accumulation x %d processes; %d steps per epoch",
        config.batch_size,
        loop.per_device,
        loop.accumulation,
        accelerator.num_processes,
        loop.steps_per_epoch,
    )

    def evaluate(epoch: int) -> None:
        evaluations.evaluate(epoch, loop.state.step, loop.model)

    if config.eval_before_training and resumed is None:
        evaluate(0)
    stopped = loop.train(after_epoch=evaluate)
    return _finish(loop, evaluations, resumed, stopped)


def _finish(
    loop: TrainingLoop, evaluations: EpochEvaluations, resumed: int | None, stopped: bool
) -> TrainClapResult:
    """Write ``train_stats.json`` and the best epoch's report (and push it), on the main process."""
    config, state, accelerator = loop.config, loop.state, loop.accelerator
    output = Path(config.output)
    best = evaluations.best()
    if accelerator.is_main_process:
        stats = {
            "steps": state.step,
            "epochs_completed": state.epoch,
            "stopped_at_max_steps": stopped,
            "resumed_from_step": resumed,
            "clips_trained": state.clips,
            "global_batch": config.batch_size,
            "per_device_batch": loop.per_device,
            "gradient_accumulation_steps": loop.accumulation,
            "processes": accelerator.num_processes,
            "dropped_undecodable": len(state.skipped),
            "undecodable": state.undecodable(),
        }
        write_text_atomically(output / "train_stats.json", json.dumps(stats, indent=2) + "\n")
        if best is not None:
            write_report(output, str(output / "best"), retrieval_report_rows(evaluations.benchmark, best))
            if config.push_to_hub:
                from fusion_datasets.train.card import push_model

                push_model(output, config, evaluations.benchmark, best)
    accelerator.wait_for_everyone()
    return TrainClapResult(
        output,
        state.step,
        state.epoch,
        resumed,
        None if best is None else summary(best),
        len(state.skipped),
    )
