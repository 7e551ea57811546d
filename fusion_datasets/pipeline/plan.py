"""The stage plan: the pipeline's steps in order, what each reads and writes, and what a change reruns.

The plan knows its steps only through the step protocol (:mod:`fusion_datasets.steps`: ``stage``,
``reads()``, ``writes()``, ``fingerprint()``, ``streaming``, ``batch_size``). From it come:

- the fingerprint of each stage, recorded with every part of an output, so a rerun knows which stages
  made which clips;
- the stages to rerun when some change: those, and every later stage that reads a column they write
  (and so on), plus the producer of any column a rerun stage reads but the output does not store
  (separated tracks kept in memory only);
- the passes an executor makes over a part: consecutive media steps share one pass, so each clip is
  decoded once and resampled once per rate for all of them; a streaming step (an LLM stage) takes a
  pass of its own over every row of the part.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fusion_datasets.experts.chain import DECODE
from fusion_datasets.pipeline.config import PipelineConfig, build_steps
from fusion_datasets.steps import Step, merge_features


@dataclass(frozen=True)
class Plan:
    """The ordered steps of a run.

    Example:
        >>> from fusion_datasets.pipeline.config import load_config
        >>> plan = Plan.from_config(load_config("tiny"))  # the steps and their configs: no model is loaded
        >>> plan.to_rerun({"fusion"})
        ['fusion', 'clap_filter', 'qa']
        >>> plan.to_rerun({"tagging"})  # fusion reads the tags, the music gate its score
        ['tagging', 'music', 'fusion', 'clap_filter', 'qa']
    """

    steps: tuple[Step, ...]

    @classmethod
    def from_config(cls, config: PipelineConfig) -> Plan:
        return cls(tuple(build_steps(config)))

    @property
    def stages(self) -> list[str]:
        return [step.stage for step in self.steps]

    def step(self, stage: str) -> Step:
        return next(step for step in self.steps if step.stage == stage)

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        """Per stage: its fingerprint and the columns it writes (what a part records of its plan)."""
        return {step.stage: {"fingerprint": step.fingerprint(), "writes": list(step.writes())} for step in self.steps}

    def describe(self) -> list[dict[str, Any]]:
        """Each step as the dataset card shows it (model, revision, prompt and its hash, settings)."""
        return [step.card_entry() for step in self.steps]

    def output_features(self, input_features: Any) -> Any:
        """The features of a part's ``cues`` rows: the input's, then every step's columns and ``errors``."""
        produced = {name: feature for step in self.steps for name, feature in step.features().items()}
        return merge_features(input_features, produced)

    def stored(self) -> set[str]:
        """The columns the output keeps (a step may write more, for the steps after it only)."""
        return {name for step in self.steps for name in step.columns()}

    def to_rerun(self, changed: Iterable[str]) -> list[str]:
        """``changed`` stages, the stages that read what they write, and the producers of what those read
        but the output does not keep; in plan order. ``decode`` stands for every step that reads audio."""
        wanted = set(changed)
        if DECODE in wanted:
            wanted |= {step.stage for step in self.steps if step.audio_column in step.reads()}
        stored = self.stored()
        while True:
            grown = set(wanted)
            for index, step in enumerate(self.steps):
                earlier = self.steps[:index]
                if step.stage in grown:  # what it reads must be there: redo the producers of unstored columns
                    grown |= {e.stage for e in earlier if set(e.writes()) & set(step.reads()) - stored}
                elif any(e.stage in grown and set(e.writes()) & set(step.reads()) for e in earlier):
                    grown.add(step.stage)
            if grown == wanted:
                return [stage for stage in self.stages if stage in wanted]
            wanted = grown

    def passes(self, stages: Iterable[str]) -> list[list[Step]]:
        """The executor's passes over a part for ``stages``: runs of media steps computed here, runs of
        media steps answered by servers (their map batches are sized for the servers' concurrency, which
        the steps computed here must not take for their own), and each streaming step alone."""
        chosen = set(stages)
        passes: list[list[Step]] = []
        for step in self.steps:
            if step.stage not in chosen:
                continue
            if step.streaming or not passes or _pass_kind(passes[-1][0]) != _pass_kind(step):
                passes.append([step])
            else:
                passes[-1].append(step)
        return passes


def _pass_kind(step: Step) -> str:
    return "streaming" if step.streaming else "served" if step.served_concurrency else "media"
