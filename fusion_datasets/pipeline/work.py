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
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from fusion_datasets.experts.chain import DECODE
from fusion_datasets.pipeline.config import OutputConfig
from fusion_datasets.pipeline.executor import Work
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.state import OutputMismatch, Part, RunState, part_name


def owner(key: str, world_size: int) -> int:
    """The rank that owns a clip id or a part name: the same on every process and every run."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % world_size


@dataclass(frozen=True)
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
    reasons: dict[str, int] = field(default_factory=dict)  # why parts are redone -> parts

    def mine(self, rank: int, world_size: int) -> list[PartWork]:
        return [part for part in self.parts if self._owner(part, world_size) == rank]

    @staticmethod
    def _owner(part: PartWork, world_size: int) -> int:
        return owner(part.previous.name if part.previous else part.ids[0], world_size)


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
    return [Work(stages, tuple(rows)) for stages, rows in groups.items()]


def plan_work(
    state: RunState,
    parts: dict[str, Part],
    input_ids: Sequence[str],
    plan: Plan,
    output: OutputConfig,
    world_size: int = 1,
    retry_errors: bool = False,
) -> WorkPlan:
    """The parts this run has to write, for every rank (``mine`` picks one rank's)."""
    result = WorkPlan()
    wanted = set(input_ids)
    for part in parts.values():
        if part.embed_audio != output.embed_audio:
            raise OutputMismatch(
                f"{state.root} was written with output.embed_audio={str(part.embed_audio).lower()} and this run "
                f"has {str(output.embed_audio).lower()}: set it back, or write to a new output folder.")
    for part in sorted(parts.values(), key=lambda part: part.name):
        gone = tuple(clip for clip in part.ids if clip not in wanted)
        result.clips_not_in_input += len(gone)
        changed = _changed_stages(part, plan)
        removed = sorted(set(part.plan) - set(plan.stages))
        dropped = gone if output.removed_clips == "drop" else ()
        if changed:
            rerun = plan.to_rerun(changed)
            work = [Work(tuple(rerun), tuple(range(len(part.ids))))]
            reason = f"stages changed: {', '.join(rerun)}"
        elif retry_errors and part.counts.get("clips_with_errors"):
            work, reason = _error_work(state, part, plan), "retrying rows with errors"
        else:
            work = []
            reason = f"stages removed: {', '.join(removed)}" if removed else "dropping clips no longer in the input"
        if work or dropped or removed:
            kept = tuple(clip for clip in part.ids if clip not in dropped)
            name = part_name(kept, part.generation + 1)
            result.parts.append(PartWork(name, kept, tuple(work), part, dropped))
            result.reasons[reason] = result.reasons.get(reason, 0) + 1
    done = {clip for part in parts.values() for clip in part.ids}
    new = [clip for clip in input_ids if clip not in done]
    result.new_clips = len(new)
    size = math.ceil(len(new) / output.num_shards) if output.num_shards else output.shard_size
    for index in range(world_size):
        own = [clip for clip in new if owner(clip, world_size) == index]
        for start in range(0, len(own), max(size, 1)):
            ids = tuple(own[start:start + size])
            work = Work(tuple(plan.stages), tuple(range(len(ids))), clear=False)
            result.parts.append(PartWork(part_name(ids), ids, (work,)))
    return result
