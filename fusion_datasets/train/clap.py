"""``train_clap``: contrastive fine-tuning of a transformers ``ClapModel`` with ``accelerate``.

One process per device (``accelerate launch`` / ``torchrun``), mixed precision, gradient accumulation
up to the global batch, AdamW with a cosine schedule after a linear warm-up. The output folder holds:

- ``checkpoints/step-NNNNNNNN/``: ``accelerator.save_state`` plus ``training_state.json``, every
  ``save_every_steps`` optimizer steps and at the end; a rerun resumes from the latest one, skipping
  the batches its epoch already did;
- ``train_log.jsonl``: one line per optimizer step (loss, learning rate, logit scales, logits shape);
- ``eval_results.json``: retrieval metrics after each epoch (epoch 0: the model before training);
- ``best/``: the epoch with the highest ``t2a_R@1 + a2t_R@1`` (``save_pretrained``, model and processor),
  and ``report.json`` / ``report.md`` with its retrieval table;
- ``train_stats.json``: steps, clips seen, undecodable clips (each skipped and listed, never fatal).

Example:
    >>> config = load_train_config(train=["runs/out"], eval="audiocaps", output="ft")  # doctest: +SKIP
    >>> train_clap(config).best["metrics"]["t2a_R@1"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_datasets import runtime
from fusion_datasets.clap.embed import TransformersClap
from fusion_datasets.config import to_mapping
from fusion_datasets.eval.report import write_report
from fusion_datasets.eval.retrieval_eval import benchmark_name, evaluate_retrieval, retrieval_report_rows
from fusion_datasets.files import write_text_atomically
from fusion_datasets.train.config import PRESETS, TrainClapConfig, load_train_config
from fusion_datasets.train.data import CaptionedClips, ClapCollator, TrainingClips, load_table, parse_dataset_spec

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "TrainClapConfig", "TrainClapResult", "load_train_config", "train_clap"]

SELECTION = ("t2a_R@1", "a2t_R@1")  # the best epoch maximises their sum
_STATE = "training_state.json"
_MAX_LOGIT_SCALE = math.log(100)  # CLIP's and LAION-CLAP's clamp of the learnable temperature


@dataclass(frozen=True)
class TrainClapResult:
    """What a ``train_clap`` run did: steps, epochs, where it resumed, the best epoch and skipped clips."""

    output: Path
    steps: int
    epochs_completed: int
    resumed_from_step: int | None
    best: dict[str, Any] | None
    skipped_clips: int


class LiveClap(TransformersClap):
    """The model being trained as a ``ClapEmbedder`` for ``evaluate_retrieval`` (build it with ``wrap``).

    Clips are cut at their start to the model's window, so evaluation is deterministic.
    """

    def embed_audio(self, clips: Any) -> Any:
        window = self.feature_extractor.nb_max_samples
        return super().embed_audio(clips if self.fused else [clip[:window] for clip in clips])


def selection_score(metrics: dict[str, float]) -> float:
    """The number the best checkpoint maximises: ``t2a_R@1 + a2t_R@1``."""
    return sum(metrics[key] for key in SELECTION)


def latest_checkpoint(output: Path) -> Path | None:
    """The checkpoint of the highest step under ``output/checkpoints`` that was completely written."""
    done = [path.parent for path in (output / "checkpoints").glob(f"step-*/{_STATE}")]
    return max(done, key=lambda path: int(path.name.split("-")[1]), default=None)


def _mixed_precision(setting: str) -> str:
    import torch

    if setting != "auto":
        return setting
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class _Trainer:
    """One training run's state; ``train_clap`` is its public face."""

    def __init__(self, config: TrainClapConfig) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, set_seed
        from transformers import ClapModel, ClapProcessor

        self.config = config
        self.output = Path(config.output)
        world_size = runtime.process_rank().world_size
        self.per_device, self.accumulation = config.batch_layout(world_size)
        self.accelerator = Accelerator(
            mixed_precision=_mixed_precision(config.mixed_precision),
            gradient_accumulation_steps=self.accumulation,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        if self.accelerator.num_processes != world_size:
            raise RuntimeError(
                f"{world_size} processes were launched but accelerate runs {self.accelerator.num_processes}: "
                "on a machine without GPUs, set ACCELERATE_USE_CPU=1 (or use `accelerate launch --cpu`)"
            )
        set_seed(config.seed)
        self.processor = ClapProcessor.from_pretrained(config.model)
        self.model = ClapModel.from_pretrained(config.model)
        fused = bool(self.model.config.audio_config.enable_fusion)
        self.clips = TrainingClips(
            [
                CaptionedClips(
                    load_table(spec, config.train_split),
                    spec,
                    key,
                    self.processor.feature_extractor,
                    fused=fused,
                    seed=config.seed,
                    audio_column=config.audio_column,
                )
                for key, spec in enumerate(config.train)
            ]
        )
        self.eval_table = load_table(config.eval, config.eval_split)
        self.benchmark = benchmark_name(parse_dataset_spec(config.eval)[0])
        self.state: dict[str, Any] = {"step": 0, "epoch": 0, "batches_done": 0, "clips": 0, "skipped": []}
        self.evaluations: list[dict[str, Any]] = []
        self.saved_step: int | None = None

    # -- setup -------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        import torch
        from torch.utils.data import DataLoader
        from transformers import get_cosine_schedule_with_warmup

        if len(self.clips) < self.per_device:
            raise ValueError(
                f"the training data has {len(self.clips)} rows, fewer than one per-device batch "
                f"({self.per_device})"
            )
        loader = DataLoader(
            self.clips,
            batch_size=self.per_device,
            shuffle=True,
            drop_last=True,
            num_workers=self.config.num_workers,
            collate_fn=ClapCollator(self.processor.tokenizer),
            # its own generator: starting an epoch's iterator must not draw from the global RNG, whose state
            # (dropout) a checkpoint restores, or a resumed run would drift from an uninterrupted one
            generator=torch.Generator().manual_seed(self.config.seed),
        )
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        rest = [p for p in self.model.parameters() if p.ndim < 2]  # biases, norms, logit scales
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.config.weight_decay},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=self.config.learning_rate,
        )
        self.model, self.optimizer, self.loader = self.accelerator.prepare(self.model, optimizer, loader)
        self.steps_per_epoch = math.ceil(len(self.loader) / self.accumulation)
        total = self.steps_per_epoch * self.config.epochs
        # stepped by hand once per optimizer step: accelerate's wrapper would step it once per process
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, int(self.config.warmup_ratio * total), total
        )
        self.accelerator.register_for_checkpointing(self.scheduler)

    def _resume(self) -> int | None:
        checkpoint = latest_checkpoint(self.output)
        if checkpoint is None:
            return None
        self.accelerator.load_state(str(checkpoint))
        self.state = json.loads((checkpoint / _STATE).read_text())
        if not self.accelerator.is_main_process:  # the main process holds the skipped rows gathered so far
            self.state["skipped"] = []
        self.saved_step = self.state["step"]
        results = self.output / "eval_results.json"
        if results.exists():  # evaluations made after the checkpoint are made again
            self.evaluations = [
                entry
                for entry in json.loads(results.read_text())["evaluations"]
                if entry["step"] <= self.state["step"]
            ]
        logger.info(
            "resuming from %s (step %d, epoch %d)", checkpoint, self.state["step"], self.state["epoch"]
        )
        return self.state["step"]

    # -- one step ----------------------------------------------------------------------------------------
    def _micro_batch(self, batch: dict[str, Any]) -> tuple[float, list[int]] | None:
        """Forward and backward of one micro-batch; ``None`` when a process has no decodable clip."""
        import torch

        from fusion_datasets.train.loss import clap_contrastive_loss, gather_keeping_grad, shared_scale

        accelerator = self.accelerator
        counts = accelerator.gather(
            torch.tensor([batch["size"], len(batch["skipped"])], device=accelerator.device)
        )
        sizes, skipped = counts[0::2].tolist(), int(counts[1::2].sum())
        self.state["clips"] += sum(sizes)
        for item in batch["skipped"]:
            logger.warning(
                "skipped %s row %d (id %s): %s", item["dataset"], item["row"], item["id"], item["message"]
            )
            self.state["skipped"].append(item)
        if skipped and accelerator.is_main_process:
            logger.info("%d undecodable clip(s) left out of this batch", skipped)
        if min(sizes) == 0:  # every process must take part in the forward and the gathers, or none
            return None
        with accelerator.accumulate(self.model):
            output = self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                input_features=batch["input_features"],
                is_longer=batch["is_longer"],
            )
            raw = accelerator.unwrap_model(self.model)
            world = accelerator.num_processes
            loss, logits = clap_contrastive_loss(
                gather_keeping_grad(output.audio_embeds, accelerator, sizes),
                gather_keeping_grad(output.text_embeds, accelerator, sizes),
                shared_scale(raw.logit_scale_a, world),
                shared_scale(raw.logit_scale_t, world),
            )
            accelerator.backward(loss * world)
            self.optimizer.step()
            self.optimizer.zero_grad()
        return float(loss.detach()), list(logits.shape)

    def _after_optimizer_step(self, losses: list[float], logits_shape: list[int]) -> None:
        import torch

        if not self.accelerator.optimizer_step_was_skipped:
            self.scheduler.step()
        raw = self.accelerator.unwrap_model(self.model)
        with torch.no_grad():
            for scale in (raw.logit_scale_a, raw.logit_scale_t):
                scale.clamp_(0, _MAX_LOGIT_SCALE)
        self.state["step"] += 1
        if self.accelerator.is_main_process:
            line = {
                "step": self.state["step"],
                "epoch": self.state["epoch"],
                "loss": sum(losses) / len(losses),
                "lr": self.scheduler.get_last_lr()[0],
                "logit_scale_a": float(raw.logit_scale_a.detach().exp()),
                "logit_scale_t": float(raw.logit_scale_t.detach().exp()),
                "logits_shape": logits_shape,
                "micro_batches": len(losses),
            }
            with (self.output / "train_log.jsonl").open("a") as log:
                log.write(json.dumps(line) + "\n")

    # -- checkpoints and evaluation ----------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        from accelerate.utils import gather_object

        accelerator = self.accelerator
        skipped = gather_object(self.state["skipped"])
        folder = self.output / "checkpoints" / f"step-{self.state['step']:08d}"
        accelerator.save_state(str(folder))
        if accelerator.is_main_process:
            state = {**self.state, "skipped": skipped}
            write_text_atomically(folder / _STATE, json.dumps(state, indent=2) + "\n")
            done = sorted(
                (path for path in (self.output / "checkpoints").glob("step-*") if path != folder),
                key=lambda path: path.name,
            )
            for old in done[: max(0, len(done) - self.config.keep_checkpoints + 1)]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()
        self.state["skipped"] = skipped if accelerator.is_main_process else []
        self.saved_step = self.state["step"]

    def _evaluate(self, epoch: int) -> None:
        accelerator = self.accelerator
        if accelerator.is_main_process and not any(entry["epoch"] == epoch for entry in self.evaluations):
            raw = accelerator.unwrap_model(self.model)
            raw.eval()
            with accelerator.autocast():
                evaluation = evaluate_retrieval(
                    LiveClap.wrap(
                        raw, self.processor, batch_size=self.config.eval_batch_size, seed=self.config.seed
                    ),
                    self.eval_table,
                    audio_column=self.config.audio_column,
                    batch_size=self.config.eval_batch_size,
                    n_resamples=self.config.eval_resamples,
                    seed=self.config.seed,
                )
            raw.train()
            entry = {"epoch": epoch, "step": self.state["step"], **evaluation}
            logger.info(
                "epoch %d (step %d): %s",
                epoch,
                self.state["step"],
                ", ".join(f"{key} {evaluation['metrics'][key]:.2f}" for key in SELECTION),
            )
            best = self._best()
            self.evaluations.append(entry)
            if epoch > 0 and (
                best is None or selection_score(evaluation["metrics"]) > selection_score(best["metrics"])
            ):
                raw.save_pretrained(self.output / "best")
                self.processor.save_pretrained(self.output / "best")
                logger.info("new best checkpoint (%s): epoch %d", " + ".join(SELECTION), epoch)
            self._write_results()
        accelerator.wait_for_everyone()

    def _best(self) -> dict[str, Any] | None:
        trained = [entry for entry in self.evaluations if entry["epoch"] > 0]
        return max(trained, key=lambda entry: selection_score(entry["metrics"]), default=None)

    def _write_results(self) -> None:
        best = self._best()
        results = {
            "benchmark": self.benchmark,
            "selection": " + ".join(SELECTION),
            "best": None if best is None else {key: best[key] for key in ("epoch", "step", "metrics")},
            "evaluations": self.evaluations,
        }
        write_text_atomically(self.output / "eval_results.json", json.dumps(results, indent=2) + "\n")

    # -- the run -----------------------------------------------------------------------------------------
    def run(self) -> TrainClapResult:
        accelerator = self.accelerator
        self._prepare()
        resumed = self._resume()
        if accelerator.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)
            write_text_atomically(
                self.output / "train_config.json", json.dumps(to_mapping(self.config), indent=2)
            )
        logger.info(
            "global batch %d = %d per device x %d accumulation x %d processes; %d steps per epoch",
            self.config.batch_size,
            self.per_device,
            self.accumulation,
            accelerator.num_processes,
            self.steps_per_epoch,
        )
        if self.config.eval_before_training and resumed is None:
            self._evaluate(0)
        stopped = self._train_epochs()
        if self.saved_step != self.state["step"]:
            self._save_checkpoint()
        return self._finish(resumed, stopped)

    def _train_epochs(self) -> bool:
        """Train until the last epoch or ``max_steps``; ``True`` when ``max_steps`` stopped it."""
        accelerator, config = self.accelerator, self.config
        self.model.train()
        for epoch in range(self.state["epoch"], config.epochs):
            self.state["epoch"] = epoch
            self.loader.set_epoch(epoch)
            self.clips.set_epoch(epoch)
            done = self.state["batches_done"]
            batches = accelerator.skip_first_batches(self.loader, done) if done else self.loader
            losses: list[float] = []
            for batch in batches:
                result = self._micro_batch(batch)
                self.state["batches_done"] += 1
                if result is not None:
                    losses.append(result[0])
                    shape = result[1]
                if result is None or not accelerator.sync_gradients:
                    continue
                self._after_optimizer_step(losses, shape)
                losses = []
                if self.state["step"] % config.save_every_steps == 0:
                    self._save_checkpoint()
                if config.max_steps is not None and self.state["step"] >= config.max_steps:
                    return True
            self.state["epoch"], self.state["batches_done"] = epoch + 1, 0
            self._evaluate(epoch + 1)
        return False

    def _finish(self, resumed: int | None, stopped: bool) -> TrainClapResult:
        accelerator = self.accelerator
        best = self._best()
        # a clip that fails fails again each epoch: listed once
        undecodable = list({json.dumps(item, sort_keys=True): item for item in self.state["skipped"]}.values())
        if accelerator.is_main_process:
            stats = {
                "steps": self.state["step"],
                "epochs_completed": self.state["epoch"],
                "stopped_at_max_steps": stopped,
                "resumed_from_step": resumed,
                "clips_trained": self.state["clips"],
                "global_batch": self.config.batch_size,
                "per_device_batch": self.per_device,
                "gradient_accumulation_steps": self.accumulation,
                "processes": accelerator.num_processes,
                "dropped_undecodable": len(self.state["skipped"]),
                "undecodable": undecodable,
            }
            write_text_atomically(self.output / "train_stats.json", json.dumps(stats, indent=2) + "\n")
            if best is not None:
                write_report(
                    self.output, str(self.output / "best"), retrieval_report_rows(self.benchmark, best)
                )
                if self.config.push_to_hub:
                    from fusion_datasets.train.card import push_model

                    push_model(self.output, self.config, self.benchmark, best)
        accelerator.wait_for_everyone()
        return TrainClapResult(
            self.output,
            self.state["step"],
            self.state["epoch"],
            resumed,
            None if best is None else {key: best[key] for key in ("epoch", "step", "metrics")},
            len(self.state["skipped"]),
        )


def train_clap(config: TrainClapConfig) -> TrainClapResult:
    """Fine-tune ``config.model`` on ``config.train``, evaluating on ``config.eval`` after each epoch.

    Rerunning with the same output folder resumes from its latest checkpoint. See the module docstring
    for what the output folder holds.
    """
    return _Trainer(config).run()
