"""The Ray Data executor: the same plan and parts as the local executor, every stage working at once.

All the parts of a run flow through one Ray Data pipeline. Each pass of the plan (a run of media steps,
or one LLM stage, as :meth:`~fusion_datasets.pipeline.plan.Plan.passes` groups them) is a
``map_batches`` over a pool of actors that load their models once, with the resources of
``ray.resources.<stage>`` (GPUs, fractions allowed; CPUs; pool size or autoscaling range; rows per call).
Ray streams blocks between the pools, so decoding, the experts and the LLM server all work at once.
Each row carries its part, its place in the part and the stages it needs; a step runs only on the rows
that need it. The driver gathers the rows of each part as they come out and hands the part back to the
runner, which commits it exactly as for the local executor: the output cannot tell which engine made it.

Fault tolerance is Ray's: actors are restarted and their tasks retried, so a crashed actor loses no row;
a row that fails inside a step is a recorded error, as everywhere.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import datasets

from fusion_datasets.errors import UserError
from fusion_datasets.experts.base import Expert
from fusion_datasets.experts.chain import COUNTERS, ExpertChain
from fusion_datasets.pipeline.config import PipelineConfig
from fusion_datasets.pipeline.executor import ROW, clear_stages, replace_rows, sum_counters, with_plan_columns
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.stats import add_up
from fusion_datasets.pipeline.work import PartWork

logger = logging.getLogger(__name__)

PART = "_part"
STAGES = "_stages"  # the stages a row needs, as a JSON list
HELPERS = (PART, ROW, STAGES, COUNTERS)
INSTALL = 'pip install "fusion-datasets[ray]"'


def import_ray() -> Any:
    """``ray`` (with Ray Data), or a user error saying how to install it."""
    try:
        import ray
        import ray.data  # the part of the extra this executor needs
    except ImportError as error:
        raise UserError(f"--engine ray needs Ray Data, which is not installed: {INSTALL}") from error
    return ray


class PassActor:
    """One actor of a pass: its steps, their models loaded once (lazily, on the first batch)."""

    def __init__(self, steps: list[Expert], features: datasets.Features) -> None:
        self.steps = steps
        self.features = features

    def __call__(self, batch: Any) -> Any:
        rows = batch.to_pydict()
        wanted: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for index, needs in enumerate(rows[STAGES]):
            stages = tuple(step.stage for step in self.steps if step.stage in json.loads(needs))
            if stages:
                wanted[stages].append(index)
        for stages, indices in wanted.items():
            chain = ExpertChain([step for step in self.steps if step.stage in stages], record_counters=True)
            outputs = chain({column: [values[i] for i in indices] for column, values in rows.items()})
            for column, values in outputs.items():
                for index, value in zip(indices, values):
                    if column == COUNTERS:
                        value = json.dumps(add_up(json.loads(rows[COUNTERS][index] or "{}"), json.loads(value)))
                    rows[column][index] = value
        # through datasets' typed writer, as a map's output is: nested nulls and audio values encoded alike
        return datasets.Dataset.from_dict(rows, features=self.features).with_format("arrow")[:]


class RayExecutor:
    """Runs the parts of a run on Ray; ``run`` yields each part's cues and counters as it completes.

    Example:
        >>> for item, cues, counters in RayExecutor(plan, config).run(parts):  # doctest: +SKIP
        ...     commit(item, cues, counters)
    """

    def __init__(self, plan: Plan, config: PipelineConfig) -> None:
        self.ray = import_ray()
        self.plan = plan
        self.config = config

    def _init(self) -> None:
        if self.ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        address = self.config.ray.address
        logger.info("starting Ray%s", f" at {address}" if address else " on this machine")
        self.ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)

    def _rows(self, parts: Iterable[tuple[PartWork, datasets.Dataset]]) -> tuple[list[Any], dict[str, PartWork]]:
        """Each part's rows as an Arrow table with the helper columns, and the parts by name (in order)."""
        tables, items = [], {}
        for item, table in parts:
            table = with_plan_columns(self.plan, table)
            needs = [[] for _ in range(table.num_rows)]
            for work in item.work:
                if work.clear and work.rows:
                    cleared = clear_stages(self.plan, table.select(work.rows), work.stages)
                    table = replace_rows(table, work.rows, cleared)
                for row in work.rows:
                    needs[row] = sorted({*needs[row], *work.stages})
            table = (table.add_column(PART, [item.name] * table.num_rows)
                     .add_column(ROW, list(range(table.num_rows)))
                     .add_column(STAGES, [json.dumps(stages) for stages in needs])
                     .add_column(COUNTERS, [None] * table.num_rows, feature=datasets.Value("string")))
            tables.append(table.with_format("arrow")[:])
            items[item.name] = item
        return tables, items

    def run(self, parts: Iterable[tuple[PartWork, datasets.Dataset]]
            ) -> Iterator[tuple[PartWork, datasets.Dataset, dict[str, dict[str, float]]]]:
        tables, items = self._rows(parts)
        if not tables:
            return
        self._init()
        data = self.ray.data
        features = _union_features(tables)
        # blocks of one map batch: a block is what flows from one stage's actors to the next, so small
        # blocks let the next stage start on the first clips while this one works on the rest
        size = self.config.output.batch_size
        blocks = [_conform(table, features).slice(start, size) for table in tables
                  for start in range(0, table.num_rows, size)]
        stream = data.from_arrow(blocks)
        needed = {stage for item in items.values() for work in item.work for stage in work.stages}
        for steps in self.plan.passes(needed):
            resources = [self.config.ray.stage(step.stage) for step in steps]
            actors = max((r.actors for r in resources), key=lambda sizes: sizes[-1])
            size = next((r.batch_size for r in resources if r.batch_size), None)
            if size is None:  # an LLM stage keeps its server busy with many rows per call
                size = 256 if steps[0].streaming else max(self.config.output.batch_size,
                                                          *(step.batch_size or 0 for step in steps))
            stream = stream.map_batches(
                PassActor, fn_constructor_args=(steps, features), batch_format="pyarrow", batch_size=size,
                compute=data.ActorPoolStrategy(min_size=actors[0], max_size=actors[-1]),
                num_gpus=max(r.num_gpus for r in resources), num_cpus=max(r.num_cpus for r in resources),
            )  # Ray Data's actor pools restart dead actors and retry their tasks by default
        sizes = {item.name: table.num_rows for item, table in zip(items.values(), tables)}
        yield from self._gather(stream, items, sizes, features)

    def _gather(self, stream: Any, items: dict[str, PartWork], sizes: dict[str, int], features: datasets.Features
                ) -> Iterator[tuple[PartWork, datasets.Dataset, dict[str, dict[str, float]]]]:
        """Each part once all its rows are out of the pipeline: its cues in order, and its counters."""
        import pyarrow as pa
        import pyarrow.compute as pc

        cues_features = datasets.Features({name: feature for name, feature in features.items() if name not in HELPERS})
        pending: dict[str, list[Any]] = defaultdict(list)
        for batch in stream.iter_batches(batch_format="pyarrow", batch_size=None):
            for name in pc.unique(batch[PART]).to_pylist():
                pending[name].append(batch.filter(pc.equal(batch[PART], name)))
                if sum(rows.num_rows for rows in pending[name]) == sizes[name]:
                    table = pa.concat_tables(pending.pop(name)).sort_by(ROW)
                    counters = sum_counters(table[COUNTERS].to_pylist())
                    cues = datasets.Dataset(table.drop_columns(list(HELPERS))).cast(cues_features)
                    yield items[name], cues, counters


def _union_features(tables: list[Any]) -> datasets.Features:
    """Every column of the parts' tables (new clips and kept cues may differ in their input columns)."""
    features: dict[str, Any] = {}
    for table in tables:
        for name, feature in datasets.Features.from_arrow_schema(table.schema).items():
            features.setdefault(name, feature)
    return datasets.Features(features)


def _conform(table: Any, features: datasets.Features) -> Any:
    """``table`` with the columns of ``features`` (nulls where it lacks one), in their order and types."""
    import pyarrow as pa

    schema = features.arrow_schema
    for name in features:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, type=schema.field(name).type))
    return table.select(list(features)).cast(schema)
