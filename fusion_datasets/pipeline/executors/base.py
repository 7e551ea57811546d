"""What every executor is: given the plan and the run's config, it takes the parts of a run (each with its rows
and its :class:`~fusion_datasets.pipeline.work.Work`) and yields each part's cues and counters as it finishes
them. The runner commits what it yields and never knows which engine it holds (:func:`make_executor`).
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets

from fusion_datasets.pipeline.config import PipelineConfig
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.remote import RemoteInput
from fusion_datasets.pipeline.stats import add_up
from fusion_datasets.pipeline.work import PartWork
from fusion_datasets.steps import Step

PartRows = tuple[PartWork, datasets.Dataset]  # a part and its rows before its work
PartCues = tuple[PartWork, datasets.Dataset, dict[str, dict[str, float]]]  # a part done: its cues and counters

# config.engine -> "module:class", imported when asked for: the local engine never imports Ray
ENGINES = {"local": "local:LocalExecutor", "ray": "ray:RayExecutor"}


class Executor(ABC):
    """Runs the work of a run's parts with the steps of ``plan``. ``root``: the output folder, for what an
    engine keeps there (Ray's process list, the files of a remote input it reads)."""

    def __init__(self, plan: Plan, config: PipelineConfig, root: Path | None = None) -> None:
        self.plan = plan
        self.config = config
        self.root = root

    @abstractmethod
    def run(self, parts: Iterable[PartRows], progress: bool = True, source: RemoteInput | None = None
            ) -> Iterator[PartCues]:
        """Each part with its cues (its rows in order, the work done) and the counters of each stage that ran,
        as parts finish (not necessarily in the order given); ``progress``: progress bars. With ``source`` (a
        remote input), the parts' rows are rows of its index: the executor reads their media from its files."""


def make_executor(plan: Plan, config: PipelineConfig, root: Path | None = None) -> Executor:
    """The executor of ``config.engine``; an engine whose extra is missing fails here, before any work."""
    module, name = ENGINES[config.engine].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)(plan, config, root)


def sum_counters(rows: Sequence[str | None]) -> dict[str, dict[str, float]]:
    """The counters per stage of a set of rows: the sum of their ``_counters``."""
    total: dict[str, Any] = {}
    for entry in rows:
        if entry:
            total = add_up(total, json.loads(entry))
    return total


def media_batch_size(batch_size: int, steps: Sequence[Step]) -> int:
    """Rows per call of a pass of media steps: the output's map batch, or more where a step asks for more."""
    return max(batch_size, *(step.batch_size or 0 for step in steps))
