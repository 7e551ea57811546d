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

from collections.abc import Iterable, Iterator, Sequence

import datasets
from tqdm.auto import tqdm

from fusion_datasets.experts.chain import COUNTERS, ExpertChain
from fusion_datasets.pipeline.executors.base import Executor, PartCues, PartRows, media_batch_size, sum_counters
from fusion_datasets.pipeline.remote import RemoteInput
from fusion_datasets.pipeline.stats import add_up
from fusion_datasets.pipeline.work import Work, replace_rows, with_plan_columns
from fusion_datasets.runtime import progress_bars, raise_if_interrupted
from fusion_datasets.steps import Step

INPUT_FILES = ".cache/input-files"  # under the output: the files of a remote input that parts in flight read


class LocalExecutor(Executor):
    """Runs each part's :class:`~fusion_datasets.pipeline.work.Work` over its rows with the steps of ``plan``,
    one part after another (the runner's example runs it: :class:`~fusion_datasets.pipeline.runner.PipelineRunner`).
    """

    def run(self, parts: Iterable[PartRows], progress: bool = True, source: RemoteInput | None = None
            ) -> Iterator[PartCues]:
        for item, table in tqdm(parts, desc="parts", unit="part", disable=not progress):
            if source is not None:  # each file fetched once, and removed after the last part that reads it
                table = source.materialize(table, self.root / INPUT_FILES)
            yield (item, *self.run_part(table, item.work, item.name, progress))

    def run_part(self, table: datasets.Dataset, work: Sequence[Work], desc: str = "part", progress: bool = True
                 ) -> tuple[datasets.Dataset, dict[str, dict[str, float]]]:
        """``table`` with ``work`` done (its rows in order), and the counters of each stage that ran."""
        table = with_plan_columns(self.plan, table)
        counters: dict[str, dict[str, float]] = {}
        for item in (item for item in work if item.rows and item.stages):
            rows = table.select(item.rows)
            for steps in self.plan.passes(item.stages):
                rows, counts = self._pass(rows, steps, table.features, desc, progress)
                counters = add_up(counters, counts)
            table = replace_rows(table, item.rows, rows)
        return table, counters

    def _pass(self, rows: datasets.Dataset, steps: list[Step], features: datasets.Features, desc: str,
              progress: bool) -> tuple[datasets.Dataset, dict[str, dict[str, float]]]:
        output = self.config.output
        chain = ExpertChain(steps, record_counters=True, max_seconds=self.config.input.max_seconds)
        if steps[0].streaming:
            size, workers = rows.num_rows, None
        else:
            size = media_batch_size(output.batch_size, steps)
            workers = output.num_proc if output.num_proc and output.num_proc > 1 else None
        with progress_bars(progress):
            mapped = rows.map(chain, batched=True, batch_size=size, with_rank=True, num_proc=workers,
                              features=chain.output_features(features), load_from_cache_file=False,
                              desc=f"{desc}: {', '.join(step.stage for step in steps)}")
        raise_if_interrupted()  # a Ctrl-C that datasets' hashing swallowed during the map
        return mapped.remove_columns(COUNTERS), sum_counters(mapped[COUNTERS])
