"""What a run has to do, computed from clip ids and stage fingerprints, never from positions.

- Input clips in no committed part are *new*: they go into new parts of ``shard_size`` clips, the
  whole plan on each. Each clip belongs to one rank (a hash of its id), so ranks never share a clip.
- A committed part made with another fingerprint of some stage (a new fusion model, another filter
  threshold), or with a stage the plan no longer has or did not have, is *redone*: the changed stages
  and the stages that read their columns, on the part's kept cues, for all its clips.
- With ``retry_errors``, a part whose rows carry errors is redone for those rows only: the stages that
  failed and the stages that read their columns.
- Clips of committed parts that are no longer in the input are reported, and dropped from their parts
  only where ``output.removed_clips`` is ``drop``.
- A committed part that names other files than the input does now (the input moved) is rewritten with
  the input's paths, without running any stage.

A part to rewrite starts from its kept cues with the input's columns as the input has them now
(:func:`redo_rows`): the files of a moved input, and what a redone stage merges from the input.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusion_datasets.experts.chain import DECODE
from fusion_datasets.pipeline.config import OutputConfig
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.state import OutputMismatch, Part, RunState, part_name
from fusion_datasets.steps import ERRORS

ROW = "_row"  # a helper column: a row's place in its part


@dataclass(frozen=True)
class Work:
    """``stages`` (in plan order) to run on the part's ``rows``, as the rows stand: a redo's rows come with
    those stages' columns back at the input's values (:func:`~fusion_datasets.pipeline.work.redo_rows`)."""

    stages: tuple[str, ...]
    rows: tuple[int, ...]


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


def owner(key: str, world_size: int) -> int:
    """The rank that owns a clip id or a part name: the same on every process and every run."""
    if world_size == 1:  # no hash to compute: a million clips of one process plan in a fraction of a second
        return 0
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % world_size


@dataclass(frozen=True, slots=True)
class PartWork:
    """One part to write: its clips, the work on them, and the committed part it replaces (if any)."""

    name: str
    ids: tuple[str, ...]
    work: tuple[Work, ...]
    previous: Part | None = None
    dropped: tuple[str, ...] = ()  # clips of ``previous`` left out (no longer in the input)


@dataclass
class WorkPlan:
    """Every part a run has to write, and what it found on the way."""

    parts: list[PartWork] = field(default_factory=list)
    new_clips: int = 0
    clips_not_in_input: int = 0
    clips_kept_unseen: int = 0  # with removed_clips=drop: not in the input, but not known gone either (kept)
    reasons: dict[str, int] = field(default_factory=dict)  # why parts are redone -> parts

    def mine(self, rank: int, world_size: int) -> list[PartWork]:
        return [part for part in self.parts if self._owner(part, world_size) == rank]

    @staticmethod
    def _owner(part: PartWork, world_size: int) -> int:
        return owner(part.previous.name if part.previous else part.ids[0], world_size)


def _redo(stages: Sequence[str], rows: Sequence[int]) -> Work:
    """Work on a kept part's rows (:func:`redo_rows` takes what ``stages`` wrote back to the input's values)."""
    return Work(tuple(stages), tuple(rows))


def _changed_stages(part: Part, plan: Plan) -> set[str]:
    """Stages whose fingerprint differs from the part's, and the readers of what removed stages wrote."""
    current = plan.fingerprints()
    changed = {stage for stage in current
               if part.plan.get(stage, {}).get("fingerprint") != current[stage]["fingerprint"]}
    removed = {column for stage, entry in part.plan.items() if stage not in current for column in entry["writes"]}
    return changed | {step.stage for step in plan.steps if set(step.reads()) & removed}


def _error_work(state: RunState, part: Part, plan: Plan) -> list[Work]:
    """For each group of rows of ``part`` that failed the same stages: those stages and their readers."""
    table = pq.read_table(state.data("cues", part.name), columns=["errors"])
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for row, errors in enumerate(table.column("errors").to_pylist()):
        failed = {error["stage"] for error in errors or []} & {*plan.stages, DECODE}
        if failed:
            groups[tuple(plan.to_rerun(failed))].append(row)
    return [_redo(stages, rows) for stages, rows in groups.items()]


def _stored_paths(path: str, schema: pa.Schema, column: str) -> list[str | None]:
    """The files a committed part's ``cues`` name in ``column`` (an audio's ``path``: its bytes are not read)."""
    nested = pa.types.is_struct(schema.field(column).type)
    return pq.read_table(path, columns=[f"{column}.path" if nested else column]).column(0).to_pylist()


def _moved(state: RunState, part: Part, files: pa.Table, position: Mapping[str, int]) -> bool:
    """Whether ``part`` names another file than the input does now for a clip still in it (the input moved).

    Embedded audio (``output.embed_audio``) names no file of the input.
    """
    path = str(state.data("cues", part.name))
    schema = pq.read_schema(path)
    ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
    rows = [(row, position[clip]) for row, clip in enumerate(ids) if clip in position]
    for column in files.column_names:
        if column not in schema.names or (part.embed_audio and column == "audio"):
            continue
        old = _stored_paths(path, schema, column)
        new = files.column(column).take(pa.array([at for _, at in rows], pa.int64())).to_pylist()
        if any(old[row] != value for (row, _), value in zip(rows, new)):
            return True
    return False


def _file_gone(path: str) -> bool:
    """Whether the file at ``path`` is known to be gone: its folder is there, readable and holds other files,
    and nothing (not even a dangling link) has its name. An unreadable folder, a link to an unmounted disk,
    a folder that is missing or empty (an unmounted disk's mount point) say nothing of the file."""
    try:
        with os.scandir(os.path.dirname(path)) as entries:
            return not os.path.lexists(path) and any(entries)
    except OSError:  # missing or unreadable
        return False


def _known_gone(state: RunState, part: Part, gone: Sequence[str]) -> tuple[str, ...]:
    """Of ``gone`` (clips of ``part`` no longer in the input), those that ``removed_clips=drop`` may drop: a row
    of a table input is gone when the table lost it; a clip of a folder input only when its file is
    (:func:`_file_gone`), since a folder that could not be read makes its clips look removed too."""
    path = str(state.data("cues", part.name))
    schema = pq.read_schema(path)
    table = pq.read_table(path, columns=[name for name in ("id", "source") if name in schema.names])
    sources = dict(zip(table.column("id").to_pylist(), table.column("source").to_pylist())) \
        if "source" in table.column_names else {}
    files = dict(zip(table.column("id").to_pylist(), _stored_paths(path, schema, "audio"))) \
        if "audio" in schema.names else {}
    return tuple(clip for clip in gone
                 if sources.get(clip) != "folder" or (files.get(clip) and _file_gone(files[clip])))


def plan_work(
    state: RunState,
    parts: dict[str, Part],
    input_ids: Sequence[str],
    files: pa.Table,
    plan: Plan,
    output: OutputConfig,
    world_size: int = 1,
    retry_errors: bool = False,
) -> WorkPlan:
    """The parts this run has to write, for every rank (``mine`` picks one rank's).

    ``files`` holds the files each input clip names now, in the order of ``input_ids``
    (:func:`~fusion_datasets.pipeline.inputs.input_files`).
    """
    result = WorkPlan()
    position = {clip: row for row, clip in enumerate(input_ids)} if parts else {}
    for part in parts.values():
        if part.embed_audio != output.embed_audio:
            raise OutputMismatch(
                f"{state.root} was written with output.embed_audio={str(part.embed_audio).lower()} and this run "
                f"has {str(output.embed_audio).lower()}: set it back, or write to a new output folder.")
    for part in sorted(parts.values(), key=lambda part: part.name):
        gone = tuple(clip for clip in part.ids if clip not in position)
        result.clips_not_in_input += len(gone)
        changed = _changed_stages(part, plan)
        removed = sorted(set(part.plan) - set(plan.stages))
        dropped = _known_gone(state, part, gone) if output.removed_clips == "drop" and gone else ()
        result.clips_kept_unseen += len(gone) - len(dropped) if output.removed_clips == "drop" else 0
        if changed:
            rerun = plan.to_rerun(changed)
            work = [_redo(rerun, range(len(part.ids)))]
            reason = f"stages changed: {', '.join(rerun)}"
        elif retry_errors and part.counts.get("clips_with_errors"):
            work, reason = _error_work(state, part, plan), "retrying rows with errors"
        else:
            work = []
            reason = (f"stages removed: {', '.join(removed)}" if removed
                      else "dropping clips no longer in the input" if dropped
                      else "files moved in the input: re-pointing them, no stage rerun")
        if work or dropped or removed or _moved(state, part, files, position):
            kept = tuple(clip for clip in part.ids if clip not in dropped)
            name = part_name(kept, part.generation + 1)
            result.parts.append(PartWork(name, kept, tuple(work), part, dropped))
            result.reasons[reason] = result.reasons.get(reason, 0) + 1
    done = {clip for part in parts.values() for clip in part.ids}
    new = [clip for clip in input_ids if clip not in done] if done else input_ids
    result.new_clips = len(new)
    size = math.ceil(len(new) / output.num_shards) if output.num_shards else output.shard_size
    whole: dict[int, tuple[Work, ...]] = {}  # the whole plan on every row, one per part length: shared
    for index in range(world_size):
        own = [clip for clip in new if owner(clip, world_size) == index] if world_size > 1 else new
        for start in range(0, len(own), max(size, 1)):
            ids = tuple(own[start:start + size])
            if len(ids) not in whole:
                whole[len(ids)] = (Work(tuple(plan.stages), tuple(range(len(ids)))),)
            result.parts.append(PartWork(part_name(ids), ids, whole[len(ids)]))
    return result


def _reset_rows(plan: Plan, work: Sequence[Work]) -> dict[str, set[int]]:
    """Each column a step of ``plan`` writes, with the rows where ``work`` redoes the step that writes it."""
    rows: dict[str, set[int]] = {name: set() for step in plan.steps for name in step.writes()}
    for item in work:
        for stage in item.stages:
            for name in plan.step(stage).writes():
                rows[name].update(item.rows)
    return rows


def _typed(table: datasets.Dataset, names: Sequence[str], features: datasets.Features) -> datasets.Dataset:
    """``table`` with its ``names`` cast to ``features`` where they differ (so that two tables' values merge)."""
    for name in names:
        if name in table.column_names and table.features[name] != features[name]:
            table = table.cast_column(name, features[name])
    return table


def redo_rows(kept: datasets.Dataset, current: datasets.Dataset, plan: Plan, work: Sequence[Work],
              embed_audio: bool = False) -> datasets.Dataset:
    """A rewritten part's rows before its ``work``: its ``kept`` cues, with what the input gives as it is now.

    ``current`` holds the input's rows of the part's clips that are still in it. The columns of the stages to
    redo are reset to the input's values (empty where it has none) and their errors are dropped, so what a
    stage merges from the input (human tags in ``audio_tags``) is merged again; every other input column is
    the input's, so the files of a moved input are re-pointed. Clips no longer in the input keep what they
    had, and so does embedded audio (``embed_audio``), which names no file of the input.
    """
    for item in work:
        kept = replace_rows(kept, item.rows, clear_stages(plan, kept.select(item.rows), item.stages))
    features = plan.output_features(current.features)  # the output's types: a step's for what it writes
    taken = [name for name in current.column_names if name != "id" and not (embed_audio and name == "audio")]
    kept, current = _typed(kept, taken, features), _typed(current, taken, features)
    source, table = current.with_format("arrow")[:], kept.with_format("arrow")[:]
    index = {clip: row for row, clip in enumerate(source.column("id").to_pylist())}
    ids, reset = table.column("id").to_pylist(), _reset_rows(plan, work)
    for name in taken:
        rows = reset.get(name)  # None: no step writes it, every row takes the input's
        at = pa.array([index.get(clip) if rows is None or row in rows else None for row, clip in enumerate(ids)],
                      pa.int64())
        new = source.column(name).take(at)
        old = table.column(name) if name in table.column_names else pa.nulls(len(ids), new.type)
        merged = pc.if_else(pc.is_valid(at), new, old)
        table = (table.set_column(table.column_names.index(name), name, merged) if name in table.column_names
                 else table.append_column(name, merged))
    order = [*current.column_names, *(name for name in kept.column_names if name not in current.column_names)]
    types = {**kept.features, **{name: features[name] for name in taken}}
    return datasets.Dataset(table.select(order), info=datasets.DatasetInfo(
        features=datasets.Features({name: types[name] for name in order})))
