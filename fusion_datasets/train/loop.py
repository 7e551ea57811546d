"""The training loop: one process per device (``accelerate launch`` / ``torchrun``), mixed precision,
gradient accumulation up to the global batch, AdamW with a cosine schedule after a linear warm-up, the
contrastive loss over the batch gathered from every process (:mod:`fusion_datasets.train.loss`).

Each optimizer step appends a line to ``train_log.jsonl`` (loss, learning rate, logit scales, logits shape).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusion_datasets import runtime
from fusion_datasets.loading import loading_model
from fusion_datasets.train.checkpoints import TrainingState, latest_checkpoint, load_checkpoint, save_checkpoint
from fusion_datasets.train.config import TrainClapConfig
from fusion_datasets.train.data import CaptionedClips, ClapCollator, EpochOrder, TrainingClips, training_table

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"
_MAX_LOGIT_SCALE = math.log(100)  # CLIP's and LAION-CLAP's clamp of the learnable temperature


def resolve_mixed_precision(setting: str) -> str:
    """``auto``: bf16 on a GPU that has it, else fp16 on a GPU, ``no`` on the CPU; other settings as they are."""
    import torch

    if setting != "auto":
        return setting
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class TrainingLoop:
    """One run's model, data, optimizer and schedule, prepared by ``accelerate``, and its :class:`TrainingState`.

    :meth:`resume` takes up the latest checkpoint under ``config.output``; :meth:`train` runs the epochs.
    """

    def __init__(self, config: TrainClapConfig) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from transformers import ClapModel, ClapProcessor

        self.config = config
        self.output = Path(config.output)
        world_size = runtime.process_rank().world_size
        self.per_device, self.accumulation = config.batch_layout(world_size)
        self.accelerator = Accelerator(
            mixed_precision=resolve_mixed_precision(config.mixed_precision),
            gradient_accumulation_steps=self.accumulation,
        )
        if self.accelerator.num_processes != world_size:
            raise RuntimeError(
                f"{world_size} processes were launched but accelerate runs {self.accelerator.num_processes}: "
                "on a machine without GPUs, set ACCELERATE_USE_CPU=1 (or use `accelerate launch --cpu`)"
            )
        set_seed(config.seed)
        with loading_model(config.model):
            self.processor = ClapProcessor.from_pretrained(config.model)
            model = ClapModel.from_pretrained(config.model)
        fused = bool(model.config.audio_config.enable_fusion)
        self.clips = TrainingClips(
            [
                CaptionedClips(
                    training_table(spec, config.train_split),
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
        self.state = TrainingState()
        self.saved_step: int | None = None
        self._prepare(model)

    def _prepare(self, model: Any) -> None:
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
            # seeded per epoch, shard by shard; accelerate splits its batches between the processes, and a
            # resumed run skips the batches done without reading them
            sampler=EpochOrder(self.clips, self.config.seed),
            drop_last=True,
            num_workers=self.config.num_workers,
            collate_fn=ClapCollator(self.processor.tokenizer),
            # its own generator (the workers' seeds): starting an epoch's iterator must not draw from the global
            # RNG, whose state (dropout) a checkpoint restores, or a resumed run would drift from an uninterrupted one
            generator=torch.Generator().manual_seed(self.config.seed),
        )
        decay = [p for p in model.parameters() if p.ndim >= 2]
        rest = [p for p in model.parameters() if p.ndim < 2]  # biases, norms, logit scales
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.config.weight_decay},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=self.config.learning_rate,
        )
        self.model, self.optimizer, self.loader = self.accelerator.prepare(model, optimizer, loader)
        self.steps_per_epoch = math.ceil(len(self.loader) / self.accumulation)
        total = self.steps_per_epoch * self.config.epochs
        # stepped by hand once per optimizer step: accelerate's wrapper would step it once per process
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, int(self.config.warmup_ratio * total), total
        )
        self.accelerator.register_for_checkpointing(self.scheduler)

    def resume(self) -> int | None:
        """Load the latest checkpoint, if any; returns its step."""
        checkpoint = latest_checkpoint(self.output)
        if checkpoint is None:
            return None
        self.state = load_checkpoint(self.accelerator, checkpoint)
        self.saved_step = self.state.step
        logger.info("resuming from %s (step %d, epoch %d)", checkpoint, self.state.step, self.state.epoch)
        return self.state.step

    def save(self) -> None:
        save_checkpoint(self.accelerator, self.output, self.state, self.config.keep_checkpoints)
        self.saved_step = self.state.step

    def train(self, after_epoch: Callable[[int], None]) -> bool:
        """Train until the last epoch or ``max_steps``, calling ``after_epoch(epoch)`` after each, then save.

        Returns ``True`` when ``max_steps`` stopped it.
        """
        stopped = self._train_epochs(after_epoch)
        if self.saved_step != self.state.step:
            self.save()
        return stopped

    def _train_epochs(self, after_epoch: Callable[[int], None]) -> bool:
        accelerator, config, state = self.accelerator, self.config, self.state
        self.model.train()
        for epoch in range(state.epoch, config.epochs):
            state.epoch = epoch
            self.loader.set_epoch(epoch)
            self.clips.set_epoch(epoch)
            done = state.batches_done
            batches = accelerator.skip_first_batches(self.loader, done) if done else self.loader
            losses: list[float] = []
            for batch in batches:
                result = self._micro_batch(batch)
                state.batches_done += 1
                if result is not None:
                    losses.append(result[0])
                    shape = result[1]
                if result is None or not accelerator.sync_gradients:
                    continue
                self._after_optimizer_step(losses, shape)
                losses = []
                if state.step % config.save_every_steps == 0:
                    self.save()
                if config.max_steps is not None and state.step >= config.max_steps:
                    return True
            state.epoch, state.batches_done = epoch + 1, 0
            after_epoch(epoch + 1)
        return False

    def _micro_batch(self, batch: dict[str, Any]) -> tuple[float, list[int]] | None:
        """Forward and backward of one micro-batch; ``None`` when a process has no decodable clip."""
        import torch

        from fusion_datasets.train.loss import clap_contrastive_loss, gather_keeping_grad, shared_scale

        accelerator = self.accelerator
        counts = accelerator.gather(
            torch.tensor([batch["size"], len(batch["skipped"])], device=accelerator.device)
        )
        sizes, skipped = counts[0::2].tolist(), int(counts[1::2].sum())
        self.state.clips += sum(sizes)
        for item in batch["skipped"]:
            logger.warning(
                "skipped %s row %d (id %s): %s", item["dataset"], item["row"], item["id"], item["message"]
            )
            self.state.skipped.append(item)
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
        self.state.step += 1
        if self.accelerator.is_main_process:
            line = {
                "step": self.state.step,
                "epoch": self.state.epoch,
                "loss": sum(losses) / len(losses),
                "lr": self.scheduler.get_last_lr()[0],
                "logit_scale_a": float(raw.logit_scale_a.detach().exp()),
                "logit_scale_t": float(raw.logit_scale_t.detach().exp()),
                "logits_shape": logits_shape,
                "micro_batches": len(losses),
            }
            with (self.output / TRAIN_LOG).open("a") as log:
                log.write(json.dumps(line) + "\n")
