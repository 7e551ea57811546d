"""``run --dry-run``: what a run would do, and a rough estimate of the compute each stage would take.

The estimate divides the clips still to do by clips per second that ``benchmarks/experts.py --save``
measured, or ``benchmarks/gpu/run.sh`` for the paper config's experts at their real sizes on a GPU (its file
adds each stage's detail and a projection, under keys this module ignores). The bundled figures were measured
on the tiny zoo on a 2-core CPU: they show the plumbing's own cost, not a 7B model's; measure your models and
hardware with a benchmark and pass the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fusion_datasets.pipeline.config import PipelineConfig


@dataclass(frozen=True)
class Throughput:
    """Clips per second per stage, and where the figures come from."""

    clips_per_second: dict[str, float]
    measured_on: str = "unknown"  # device and models, in words
    clip_seconds: float | None = None  # the length of the benchmark's clips


def load_throughput(path: str | Path | None = None) -> Throughput:
    """Figures written by ``benchmarks/experts.py --save FILE`` or ``benchmarks/gpu/benchmark.py --output FILE``;
    the bundled ones without ``path``."""
    if path is None:
        text = resources.files("fusion_datasets").joinpath("resources/throughput.json").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    data = json.loads(text)
    return Throughput({stage: float(value) for stage, value in data["clips_per_second"].items()},
                      data.get("measured_on", "unknown"), data.get("clip_seconds"))


def _model(step_config: Any) -> str:
    backend = getattr(step_config, "backend", None)
    model = getattr(step_config, "model", None) or (backend.model if backend else "?")
    revision = getattr(step_config, "revision", None) or (backend.revision if backend else None)
    return f"{model}@{revision}" if revision else str(model)


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def describe_plan(config: PipelineConfig, throughput: Throughput | None = None) -> str:
    """The plan of ``run`` with ``config``, as text: clips, parts (done and to do), steps, estimates.

    It reads the input and the output's run state as ``run`` would, and writes nothing.
    """
    from fusion_datasets.pipeline.runner import PipelineRunner

    throughput = throughput or load_throughput()
    runner = PipelineRunner(config, rank=0, world_size=1)
    _, ids, work = runner.prepare()
    todo = {stage: 0 for stage in runner.plan.stages}
    for part in work.parts:
        for item in part.work:
            for stage in item.stages:
                todo[stage] += len(item.rows)
    redone = "".join(f"; {count} parts to redo ({reason})" for reason, count in work.reasons.items())
    lines = [
        f"config {config.name}: {len(ids)} clips from {config.input.path}",
        f"output {runner.root}: {len(ids) - work.new_clips} clips already done, {work.new_clips} new clips to do "
        f"in {sum(part.previous is None for part in work.parts)} parts{redone}"
        + (f"; {work.clips_not_in_input} clips no longer in the input" if work.clips_not_in_input else ""),
        f"estimates from {throughput.measured_on}"
        + (f", {throughput.clip_seconds:g} s clips" if throughput.clip_seconds else ""),
        f"{'stage':<13}{'model':<52}{'clips':>7}{'clips/s':>9}{'estimate':>13}",
    ]
    seconds = 0.0
    for step in runner.plan.steps:
        rate = throughput.clips_per_second.get(step.stage)
        estimate = todo[step.stage] / rate if rate else None
        seconds += estimate or 0.0
        model = _model(step.config) + (" (served)" if step.served_concurrency else "")
        lines.append(f"{step.stage:<13}{model[-51:]:<52}{todo[step.stage]:>7}{rate or 0:>9.2f}"
                     f"{_duration(estimate) if estimate is not None else 'not measured':>13}")
    lines.append(f"total (measured stages): {_duration(seconds)} on one process")
    return "\n".join(lines)
