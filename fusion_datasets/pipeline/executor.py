"""The local executor: runs the plan's stages over the rows of one part, in this process.

Each pass over the rows is one ``datasets.map``: a run of media steps shares a pass (each clip decoded
once per map batch and resampled once per rate for all of them, each step calling its model on
``batch_size`` clips at a time), and each streaming step (an LLM stage) takes every row of the part in
one call, so a served model sees up to ``max_concurrency`` requests in flight and a re-ask is sent as
soon as the answer it corrects arrives.

Parts run one after another: while an LLM stage waits on its server, this process does not start the
next part's experts. Overlapping parts is what the Ray executor is for (every stage working at once on
its own actors); here it would take a second thread holding models on the same devices, and a Ctrl-C or
a SIGKILL would no longer stop one part at one known point.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from fusion_datasets.experts.base import ERRORS, Expert
from fusion_datasets.experts.chain import COUNTERS, DECODE, ExpertChain
from fusion_datasets.pipeline.config import OutputConfig
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.stats import add_up
from fusion_datasets.runtime import progress_bars, raise_if_interrupted

ROW = "_row"


@dataclass(frozen=True)
class Work:
    """``stages`` (in plan order) to run on the part's ``rows``, as the rows stand: a redo's rows come with
    those stages' columns back at the input's values (:func:`~fusion_datasets.pipeline.work.redo_rows`)."""

    stages: tuple[str, ...]
    rows: tuple[int, ...]


def sum_counters(rows: Sequence[str | None]) -> dict[str, dict[str, float]]:
    """The counters per stage of a set of rows: the sum of their ``_counters``."""
    total: dict[str, Any] = {}
    for entry in rows:
        if entry:
            total = add_up(total, json.loads(entry))
    return total


def _clear(batch: dict[str, list], columns: Sequence[str], stages: set[str]) -> dict[str, list]:
    """Empty ``columns`` and drop the errors of ``stages``: what a rerun of those stages fills again."""
    size = len(batch[ERRORS])
    cleared: dict[str, list] = {column: [None] * size for column in columns}
    cleared[ERRORS] = [[error for error in row or [] if error["stage"] not in stages] for row in batch[ERRORS]]
    return cleared


def with_plan_columns(plan: Plan, table: datasets.Dataset) -> datasets.Dataset:
    """``table`` with every column of the plan's steps (empty where missing), typed as the output's ``cues``."""
    features = plan.output_features(table.features)
    missing = [name for name in features if name not in table.column_names]
    if not missing:
        return table
    return table.map(lambda batch: {name: [None] * len(next(iter(batch.values()))) for name in missing},
                     batched=True, features=features, desc="preparing rows")


def clear_stages(plan: Plan, rows: datasets.Dataset, stages: Sequence[str]) -> datasets.Dataset:
    """``rows`` without what ``stages`` wrote and without their errors (and decode's, where they read audio)."""
    steps = [plan.step(stage) for stage in stages]
    dropped = {*stages, *([DECODE] if any(step.audio_column in step.reads() for step in steps) else [])}
    columns = [name for step in steps for name in step.writes() if name in rows.features]
    return rows.map(_clear, batched=True, fn_kwargs={"columns": columns, "stages": dropped}, features=rows.features,
                    desc="clearing the stages to redo")


def replace_rows(table: datasets.Dataset, rows: Sequence[int], replacement: datasets.Dataset) -> datasets.Dataset:
    """``table`` with its ``rows`` replaced by those of ``replacement``, in order."""
    if len(rows) == table.num_rows:
        return replacement.flatten_indices()
    replaced = set(rows)
    kept = [row for row in range(table.num_rows) if row not in replaced]
    merged = datasets.concatenate_datasets([table.select(kept).add_column(ROW, kept),
                                            replacement.add_column(ROW, list(rows))])
    order = sorted(range(merged.num_rows), key=merged[ROW].__getitem__)
    return merged.select(order).remove_columns(ROW).flatten_indices()


class LocalExecutor:
    """Runs :class:`Work` over a part's rows with the steps of ``plan``.

    Example:
        >>> work = [Work(tuple(plan.stages), (0, 1))]
        >>> cues, counters = LocalExecutor(plan, config.output).run(rows, work)  # doctest: +SKIP
    """

    def __init__(self, plan: Plan, output: OutputConfig, progress: bool = True, max_seconds: float | None = None
                 ) -> None:
        self.plan = plan
        self.output = output
        self.progress = progress  # a progress bar for each pass of steps over a part
        self.max_seconds = max_seconds  # input.max_seconds: the longest whole file the steps decode

    def run(self, table: datasets.Dataset, work: Sequence[Work], desc: str = "part"
            ) -> tuple[datasets.Dataset, dict[str, dict[str, float]]]:
        """``table`` with ``work`` done (its rows in order), and the counters of each stage that ran."""
        table = with_plan_columns(self.plan, table)
        counters: dict[str, dict[str, float]] = {}
        for item in (item for item in work if item.rows and item.stages):
            rows = table.select(item.rows)
            for steps in self.plan.passes(item.stages):
                rows, counts = self._pass(rows, steps, table.features, desc)
                counters = add_up(counters, counts)
            table = replace_rows(table, item.rows, rows)
        return table, counters

    def _pass(self, rows: datasets.Dataset, steps: list[Expert], features: datasets.Features, desc: str
              ) -> tuple[datasets.Dataset, dict[str, dict[str, float]]]:
        chain = ExpertChain(steps, record_counters=True, max_seconds=self.max_seconds)
        if steps[0].streaming:
            size, workers = rows.num_rows, None
        else:
            size = max(self.output.batch_size, *(step.batch_size or 0 for step in steps))
            workers = self.output.num_proc if self.output.num_proc and self.output.num_proc > 1 else None
        with progress_bars(self.progress):
            mapped = rows.map(chain, batched=True, batch_size=size, with_rank=True, num_proc=workers,
                              features=chain.output_features(features), load_from_cache_file=False,
                              desc=f"{desc}: {', '.join(step.stage for step in steps)}")
        raise_if_interrupted()  # a Ctrl-C that datasets' hashing swallowed during the map
        return mapped.remove_columns(COUNTERS), sum_counters(mapped[COUNTERS])
