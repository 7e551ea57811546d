"""A review of one output: its sampled clips, the reviewer's judgements, the filter and its calibration.

Example:
    >>> session = open_review("out", sample=50, seed=0, reviewer="alice")  # "out": a run's output folder
    >>> session.judge(0, "good")
    {'sampled': 4, 'judged': 1, 'good': 1, 'bad': 0, 'threshold': -1.0, 'scored': 0, 'agreement': None}
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_datasets.errors import UserError
from fusion_datasets.review.clips import (
    FilterSettings,
    ReviewClip,
    filter_settings,
    load_candidates,
    output_root,
    read_clips,
)
from fusion_datasets.review.judgements import CALIBRATION_FOLDER, REVIEW_FOLDER, JudgementStore, judgements_path
from fusion_datasets.review.sample import stratified_sample

_REPORTED = ("threshold", "beta", "f_beta", "precision", "recall", "agreement", "removed_share", "n", "n_good")


@dataclass
class ReviewSession:
    """What the page and the server work from; clips are addressed by their place in the sample."""

    root: Path
    clips: list[ReviewClip]
    store: JudgementStore
    settings: FilterSettings

    def judge(self, index: int, label: str, note: str = "") -> dict[str, Any]:
        """Record the reviewer's ``label`` of the ``index``-th clip; returns the new summary."""
        if not 0 <= index < len(self.clips):
            raise IndexError(f"no clip {index} in a sample of {len(self.clips)}")
        self.store.record(self.clips[index], label, note)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return self.store.summary(self.clips, self.settings.threshold)

    def calibration_plot(self) -> Path | None:
        """calibrate-filter's plot, if it has run into the review's calibration folder (never a link out of it)."""
        plot = self.root / CALIBRATION_FOLDER / "calibration.png"
        return plot if plot.is_file() and plot.resolve().is_relative_to(self.root) else None

    def calibration_result(self) -> dict[str, Any] | None:
        """calibrate-filter's result where it has run into the review's calibration folder (numbers only)."""
        report = self.root / CALIBRATION_FOLDER / "calibration.json"
        if not report.is_file():
            return None
        loaded = json.loads(report.read_text(encoding="utf-8"))
        return {key: loaded[key] for key in _REPORTED if key in loaded}

    def calibration(self) -> dict[str, Any]:
        """How to run calibrate-filter on the judgements (in the output folder), how to apply its threshold to
        the run, and its result where it has run.

        The command names the run's CLAP model as config.yaml does: a Hub id, or a local model's public name
        ``local:NAME``, which calibrate-filter finds in the run's record beside the judgements; ``MODEL`` where
        neither loads here, which ``model_hint`` explains.
        """
        model = self.settings.model if self.settings.loadable else None
        result = self.calibration_result()
        threshold = f"{result['threshold']:.6g}" if result and "threshold" in result else "T"
        return {
            "command": f"fusion-datasets calibrate-filter {REVIEW_FOLDER}/*.jsonl "
                       f"--model {shlex.quote(model or 'MODEL')} --output {CALIBRATION_FOLDER}",
            "model_hint": None if model else f"MODEL: the folder of the filter's CLAP model "
                                             f"({self.settings.model or 'filter.model'} in config.yaml), or its Hub id",
            "apply": f"fusion-datasets run CONFIG --output OUT --set filter.threshold={threshold}",
            "apply_hint": "CONFIG, OUT (this folder), --input and any other --set as the run was started"
                          + ("" if result else "; T: the threshold calibrate-filter chose")
                          + ". Only the CLAP filter and the steps that read its columns run again.",
            "result": result,
        }

    def page_data(self, media_url: str, plot_url: str | None, editable: bool) -> dict[str, Any]:
        """Everything the page shows, as JSON: no machine path, no token."""
        return {
            "reviewer": self.store.reviewer,
            "editable": editable,
            "judgements_file": f"{REVIEW_FOLDER}/{self.store.path.name}",
            "clips": [clip.public(index, media_url) for index, clip in enumerate(self.clips)],
            "judgements": self.store.labels(),
            "summary": self.summary(),
            "calibration": {**self.calibration(), "plot_url": plot_url if self.calibration_plot() else None},
        }


def open_review(output: str | Path, sample: int = 50, seed: int = 0, reviewer: str = "reviewer") -> ReviewSession:
    """The review of the output folder ``output``: ``sample`` captions stratified over CLAP scores by ``seed``."""
    if sample < 1:
        raise UserError(f"--sample {sample}: give at least 1")
    root = output_root(output)
    store = JudgementStore(judgements_path(root, reviewer))
    candidates = load_candidates(root)
    if not candidates:
        raise UserError(f"{output} has no captioned clip yet: run `fusion-datasets run` to the end first")
    picks = stratified_sample([c.clap_score for c in candidates], [c.clap_keep for c in candidates], sample, seed)
    clips = read_clips(root, [candidates[i] for i in picks])
    return ReviewSession(root=root, clips=clips, store=store, settings=filter_settings(root))
