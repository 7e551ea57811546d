"""Retrieval evaluation of the model being trained after each epoch: ``eval_results.json`` and ``best/``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fusion_datasets.clap.embed import TransformersClap
from fusion_datasets.eval.retrieval_eval import benchmark_name, evaluate_retrieval
from fusion_datasets.files import write_text_atomically
from fusion_datasets.train.config import TrainClapConfig
from fusion_datasets.train.data import load_table, parse_dataset_spec

logger = logging.getLogger(__name__)

SELECTION = ("t2a_R@1", "a2t_R@1")  # the best epoch maximises their sum
RESULTS_FILE = "eval_results.json"


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


def summary(entry: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's ``epoch``, ``step`` and ``metrics``."""
    return {key: entry[key] for key in ("epoch", "step", "metrics")}


class EpochEvaluations:
    """One run's evaluations on ``config.eval``, made on the main process (epoch 0: the untrained model).

    Each is appended to ``eval_results.json``; a trained epoch that beats every earlier one by
    :func:`selection_score` is saved to ``best/`` (``save_pretrained``, model and processor).
    """

    def __init__(self, config: TrainClapConfig, accelerator: Any, processor: Any) -> None:
        self.config = config
        self.output = Path(config.output)
        self.accelerator = accelerator
        self.processor = processor
        self.table = load_table(config.eval, config.eval_split)
        self.benchmark = benchmark_name(parse_dataset_spec(config.eval)[0])
        self.entries: list[dict[str, Any]] = []

    def restore(self, step: int) -> None:
        """Take up the saved evaluations up to ``step``: those made after that checkpoint are made again."""
        results = self.output / RESULTS_FILE
        if results.exists():
            saved = json.loads(results.read_text())["evaluations"]
            self.entries = [entry for entry in saved if entry["step"] <= step]

    def best(self) -> dict[str, Any] | None:
        """The trained epoch's evaluation with the highest :func:`selection_score`."""
        trained = [entry for entry in self.entries if entry["epoch"] > 0]
        return max(trained, key=lambda entry: selection_score(entry["metrics"]), default=None)

    def evaluate(self, epoch: int, step: int, model: Any) -> None:
        """Evaluate ``model`` (as ``accelerate`` prepared it) after ``epoch``, unless a resumed run already did."""
        accelerator, config = self.accelerator, self.config
        if accelerator.is_main_process and not any(entry["epoch"] == epoch for entry in self.entries):
            raw = accelerator.unwrap_model(model)
            raw.eval()
            with accelerator.autocast():
                evaluation = evaluate_retrieval(
                    LiveClap.wrap(raw, self.processor, batch_size=config.eval_batch_size, seed=config.seed),
                    self.table,
                    audio_column=config.audio_column,
                    batch_size=config.eval_batch_size,
                    n_resamples=config.eval_resamples,
                    seed=config.seed,
                )
            raw.train()
            logger.info(
                "epoch %d (step %d): %s",
                epoch,
                step,
                ", ".join(f"{key} {evaluation['metrics'][key]:.2f}" for key in SELECTION),
            )
            best = self.best()
            self.entries.append({"epoch": epoch, "step": step, **evaluation})
            if epoch > 0 and (
                best is None or selection_score(evaluation["metrics"]) > selection_score(best["metrics"])
            ):
                raw.save_pretrained(self.output / "best")
                self.processor.save_pretrained(self.output / "best")
                logger.info("new best checkpoint (%s): epoch %d", " + ".join(SELECTION), epoch)
            self._write()
        accelerator.wait_for_everyone()

    def _write(self) -> None:
        best = self.best()
        results = {
            "benchmark": self.benchmark,
            "selection": " + ".join(SELECTION),
            "best": None if best is None else summary(best),
            "evaluations": self.entries,
        }
        write_text_atomically(self.output / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
