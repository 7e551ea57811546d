"""The Ray Data executor: the same plan and parts as the local executor, every stage working at once.

All the parts of a run flow through one Ray Data pipeline. Each pass of the plan (a run of media steps,
or one LLM stage, as :meth:`~fusion_datasets.pipeline.plan.Plan.passes` groups them) is a
``map_batches`` over a pool of actors that load their models once, with the resources of
``ray.resources.<stage>`` (GPUs, fractions allowed; CPUs; pool size or autoscaling range; rows per call).
Ray streams blocks between the pools, so decoding, the experts and the LLM server all work at once:
a media pass's audio is decoded by CPU tasks ahead of its actors, and a pass of served LLM steps keeps
``max_concurrency`` requests in flight across its batches.
Each row carries its part, its place in the part and the stages it needs; a step runs only on the rows
that need it. The driver gathers the rows of each part as they come out and hands the part back to the
runner, which commits it exactly as for the local executor: the output cannot tell which engine made it.
Of a remote input (:class:`~fusion_datasets.pipeline.remote.RemoteInput`) the driver holds the index
only: the first task of each part reads its rows' media (the row groups or tar members that hold them).

Fault tolerance is Ray's: actors are restarted and their tasks retried, so a crashed actor loses no row;
a row that fails inside a step is a recorded error, as everywhere.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from fusion_datasets.errors import UserError
from fusion_datasets.experts.chain import COUNTERS, ExpertChain
from fusion_datasets.files import write_text_atomically
from fusion_datasets.media import MediaError, decode_audio
from fusion_datasets.pipeline.config import PipelineConfig
from fusion_datasets.pipeline.executors.base import Executor, PartCues, PartRows, media_batch_size, sum_counters
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.remote import SOURCE_COLUMNS, RemoteInput
from fusion_datasets.pipeline.stats import add_up
from fusion_datasets.pipeline.work import ROW, PartWork, with_plan_columns
from fusion_datasets.steps import Step

logger = logging.getLogger(__name__)

PART = "_part"
STAGES = "_stages"  # the stages a row needs, as a JSON list
HELPERS = (PART, ROW, STAGES, COUNTERS)
PCM = "_pcm:"  # the prefix of a helper column: an audio column's samples, decoded ahead by a CPU task
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

    def __init__(self, steps: list[Step], features: datasets.Features, max_seconds: float | None = None) -> None:
        self.steps = steps
        self.features = features
        self.max_seconds = max_seconds

    def __call__(self, batch: Any) -> Any:
        rows = batch.to_pydict()
        decoded = {name.removeprefix(PCM): rows.pop(name) for name in list(rows) if name.startswith(PCM)}
        wanted: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for index, needs in enumerate(rows[STAGES]):
            stages = tuple(step.stage for step in self.steps if step.stage in json.loads(needs))
            if stages:
                wanted[stages].append(index)
        for stages, indices in wanted.items():
            chain = ExpertChain([step for step in self.steps if step.stage in stages], record_counters=True,
                                max_seconds=self.max_seconds)
            inputs = {column: [values[i] for i in indices] for column, values in rows.items()}
            for column, cells in decoded.items():  # the samples a decode task made ahead, where it could
                inputs[column] = [_waveform_cell(cells[i]) or inputs[column][k] for k, i in enumerate(indices)]
            outputs = chain(inputs)
            for column, values in outputs.items():
                for index, value in zip(indices, values):
                    if column == COUNTERS:
                        value = json.dumps(add_up(json.loads(rows[COUNTERS][index] or "{}"), json.loads(value)))
                    rows[column][index] = value
        # through datasets' typed writer, as a map's output is: nested nulls and audio values encoded alike
        return datasets.Dataset.from_dict(rows, features=self.features).with_format("arrow")[:]


def record_processes(path: Path) -> None:
    """List the processes this one started (a local Ray's: GCS, raylet, agents, workers) in ``path``."""
    import psutil

    children = psutil.Process().children(recursive=True)
    write_text_atomically(path, json.dumps([{"pid": child.pid, "created": child.create_time()}
                                            for child in children]))


def end_processes(path: Path) -> None:
    """End the processes listed in ``path`` by a run that was killed before it could (a SIGKILLed driver leaves
    its local Ray's agents running); a pid that another process has taken since is left alone."""
    import psutil

    if not path.is_file():
        return
    ended = 0
    for entry in json.loads(path.read_text("utf-8")):
        try:
            process = psutil.Process(entry["pid"])
            if process.create_time() == entry["created"]:
                process.kill()
                ended += 1
        except psutil.Error:  # gone already, or not ours to end
            continue
    if ended:
        logger.warning("ended %d processes of a local Ray left by a killed run (listed in %s)", ended, path)
    path.unlink(missing_ok=True)


def wait_for_cluster(address: str, timeout: float) -> None:
    """Return once the Ray cluster at ``address`` (``HOST:PORT``, ``ray://HOST:PORT``) takes a connection;
    raise :class:`UserError` after ``timeout`` seconds (Ray itself would retry for minutes). ``auto`` and
    ``local`` are found by Ray on this machine."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if address in ("auto", "local") or not port.isdigit():
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            left = max(deadline - time.monotonic(), 0.1)
            socket.create_connection((host.strip("[]"), int(port)), timeout=left).close()
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise UserError(f"the Ray cluster at {address} cannot be reached ({error}; waited {timeout:g} s, "
                                "ray.connect_timeout): check --ray-address, or leave it out to start Ray on this "
                                "machine") from None
            time.sleep(0.5)


class RayExecutor(Executor):
    """Runs the parts of a run on Ray; ``run`` yields each part's cues and counters as it completes (a run picks
    it with ``engine: ray``)."""

    def __init__(self, plan: Plan, config: PipelineConfig, root: Path | None = None) -> None:
        super().__init__(plan, config, root)
        self.ray = import_ray()
        # the processes of a local Ray this run starts are listed here, for the next run if this one is killed
        self.leftovers = root / ".cache" / "ray-processes.json" if root else None

    def _init(self) -> bool:
        """Join the cluster at ``ray.address``, or start a local Ray; returns whether it started one."""
        if self.ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        address = self.config.ray.address
        if address:
            wait_for_cluster(address, self.config.ray.connect_timeout)
        elif self.leftovers:
            end_processes(self.leftovers)
        logger.info("starting Ray%s", f" at {address}" if address else " on this machine")
        self.ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        if not address and self.leftovers:
            record_processes(self.leftovers)
        return not address

    def _rows(self, parts: Iterable[PartRows]) -> tuple[list[Any], dict[str, PartWork]]:
        """Each part's rows as an Arrow table with the helper columns, and the parts by name (in order)."""
        tables, items = [], {}
        for item, table in parts:
            table = with_plan_columns(self.plan, table)
            needs = [[] for _ in range(table.num_rows)]
            for work in item.work:
                for row in work.rows:
                    needs[row] = sorted({*needs[row], *work.stages})
            table = (table.add_column(PART, [item.name] * table.num_rows)
                     .add_column(ROW, list(range(table.num_rows)))
                     .add_column(STAGES, [json.dumps(stages) for stages in needs])
                     .add_column(COUNTERS, [None] * table.num_rows, feature=datasets.Value("string")))
            tables.append(table.with_format("arrow")[:])
            items[item.name] = item
        return tables, items

    def run(self, parts: Iterable[PartRows], progress: bool = True, source: RemoteInput | None = None
            ) -> Iterator[PartCues]:
        tables, items = self._rows(parts)
        if not tables:
            return
        started = self._init()
        self.ray.data.DataContext.get_current().enable_progress_bars = progress
        try:
            yield from self._stream(tables, items, source)
        finally:
            if started:  # the local Ray this run started ends with it, all its processes
                self.ray.shutdown()
                if self.leftovers:
                    self.leftovers.unlink(missing_ok=True)

    def _stream(self, tables: list[Any], items: dict[str, PartWork], source: RemoteInput | None
                ) -> Iterator[PartCues]:
        data = self.ray.data
        features = _union_features(tables)
        if source is None:
            # blocks of one map batch: a block is what flows from one stage's actors to the next, so small
            # blocks let the next stage start on the first clips while this one works on the rest
            size = self.config.output.batch_size
            stream = data.from_arrow([_conform(table, features).slice(start, size) for table in tables
                                      for start in range(0, table.num_rows, size)])
        else:  # rows of the input's index: a task per part reads their media
            stream = data.from_arrow([_conform(table, features) for table in tables]).map_batches(
                source.read_rows, batch_format="pyarrow", batch_size=None, num_cpus=1)
            features = datasets.Features({name: feature for name, feature in features.items()
                                          if name not in SOURCE_COLUMNS})
        needed = {stage for item in items.values() for work in item.work for stage in work.stages}
        for steps in self.plan.passes(needed):
            stream = self._map_pass(stream, steps, features)
        sizes = {item.name: table.num_rows for item, table in zip(items.values(), tables)}
        yield from self._gather(stream, items, sizes, features)

    def _map_pass(self, stream: Any, steps: list[Step], features: datasets.Features) -> Any:
        """``stream`` through one pass: a pool of actors with the pass's resources, fed by decode tasks.

        A media pass's audio is decoded ahead by CPU tasks, so actors holding a GPU only run their
        models (Ray fuses the tasks into the actors where both ask for the same resources: CPUs only).
        A pass of served steps overlaps two calls per actor, each of up to ``max_concurrency`` rows:
        while one call's last answers come in, the next one's requests fill the server's free slots (the
        backend bounds what is in flight over both).
        """
        data = self.ray.data
        resources = [self.config.ray.stage(step.stage) for step in steps]
        actors = max((r.actors for r in resources), key=lambda sizes: sizes[-1])
        size = next((r.batch_size for r in resources if r.batch_size), None)
        served = [step.served_concurrency for step in steps]
        calls = 2 if all(served) else 1
        if size is None:
            if all(served):
                size = max(served)
            elif steps[0].streaming:  # an in-process LLM stage batches many rows per call
                size = 256
            else:
                size = media_batch_size(self.config.output.batch_size, steps)
        readers, max_seconds = _audio_readers(steps), self.config.input.max_seconds
        if readers:
            stream = stream.map_batches(partial(decode_ahead, readers=readers, max_seconds=max_seconds),
                                        batch_format="pyarrow", batch_size=self.config.output.batch_size, num_cpus=1)
        return stream.map_batches(
            PassActor, fn_constructor_args=(steps, features, max_seconds), batch_format="pyarrow", batch_size=size,
            compute=data.ActorPoolStrategy(min_size=actors[0], max_size=actors[-1],
                                           max_concurrent_calls_per_actor=calls,
                                           enable_true_multi_threading=calls > 1),
            num_gpus=max(r.num_gpus for r in resources), num_cpus=max(r.num_cpus for r in resources),
        )  # Ray Data's actor pools restart dead actors and retry their tasks by default

    def _gather(self, stream: Any, items: dict[str, PartWork], sizes: dict[str, int], features: datasets.Features
                ) -> Iterator[PartCues]:
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


def _audio_readers(steps: list[Step]) -> dict[str, frozenset[str]]:
    """Per audio column, the stages of ``steps`` that decode it."""
    readers: dict[str, set[str]] = defaultdict(set)
    for step in steps:
        if step.audio_column in step.reads():
            readers[step.audio_column].add(step.stage)
    return {column: frozenset(stages) for column, stages in readers.items()}


def decode_ahead(batch: Any, readers: dict[str, frozenset[str]], max_seconds: float | None = None) -> Any:
    """``batch`` with each audio column's samples (the clip's range, native rate) in a helper column.

    Only rows that need a stage reading the column are decoded. A clip that cannot be decoded (or a whole
    file over ``max_seconds``) gets no samples: the pass decodes it again, which records its error exactly
    as the local executor does.
    """
    import pyarrow as pa

    needs = [set(json.loads(value)) for value in batch[STAGES].to_pylist()]
    starts, ends = (batch[name].to_pylist() if name in batch.column_names else [None] * batch.num_rows
                    for name in ("start", "end"))
    for column, stages in readers.items():
        cells = []
        for row, cell in enumerate(batch[column].to_pylist()):
            try:
                waveform = decode_audio(cell, starts[row], ends[row], max_seconds) if needs[row] & stages else None
            except MediaError:
                waveform = None
            cells.append(waveform and {"samples": waveform.samples.tobytes(), "channels": waveform.samples.shape[0],
                                       "sampling_rate": waveform.sampling_rate, "warning": waveform.warning})
        batch = batch.append_column(PCM + column, pa.array(cells, type=_pcm_type()))
    return batch


def _pcm_type() -> Any:
    """The Arrow type of a helper column of samples: float32 bytes, their channels and rate, any decode warning."""
    import pyarrow as pa

    return pa.struct({"samples": pa.large_binary(), "channels": pa.int32(), "sampling_rate": pa.int32(),
                      "warning": pa.string()})


def _waveform_cell(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A decoded helper cell as an audio cell of samples (which the experts take as they are)."""
    if value is None:
        return None
    samples = np.frombuffer(value["samples"], dtype=np.float32).reshape(value["channels"], -1)
    return {"array": samples, "sampling_rate": value["sampling_rate"], "warning": value["warning"]}
