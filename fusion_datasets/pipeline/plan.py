"""``run --dry-run``: what a run would do, and a rough estimate of the compute each stage would take.

The estimate divides the clips still to do by clips per second that ``benchmarks/experts.py --save``
measured. The bundled figures were measured on the tiny zoo on a 2-core CPU: they show the plumbing's
own cost, not a 7B model's; measure your models and hardware with the benchmark and pass the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fusion_datasets.pipeline.config import PipelineConfig, build_steps
from fusion_datasets.pipeline.inputs import load_input


@dataclass(frozen=True)
class Throughput:
    """Clips per second per stage, and where the figures come from."""

    clips_per_second: dict[str, float]
    measured_on: str = "unknown"  # device and models, in words
    clip_seconds: float | None = None  # the length of the benchmark's clips


def load_throughput(path: str | Path | None = None) -> Throughput:
    """Figures written by ``benchmarks/experts.py --save FILE``; the bundled ones without ``path``."""
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
    """The plan of ``run`` with ``config``, as text: clips, shards (done and to do), steps, estimates."""
    from fusion_datasets.pipeline.runner import ShardPaths, shard_count

    throughput = throughput or load_throughput()
    clips = load_input(config.input).num_rows
    total = shard_count(clips, config.output)
    root = Path(config.output.path)
    done = sum(ShardPaths(root, index, total).done for index in range(total))
    todo = round(clips * (total - done) / total)
    lines = [
        f"config {config.name}: {clips} clips from {config.input.path}",
        f"{total} shards under {root} ({done} already done, {todo} clips to do), "
        f"batch size {config.output.batch_size}",
        f"estimates from {throughput.measured_on}"
        + (f", {throughput.clip_seconds:g} s clips" if throughput.clip_seconds else ""),
        f"{'stage':<13}{'model':<58}{'clips/s':>9}{'estimate':>10}",
    ]
    seconds = 0.0
    for step in build_steps(config):
        rate = throughput.clips_per_second.get(step.stage)
        estimate = todo / rate if rate else None
        seconds += estimate or 0.0
        lines.append(f"{step.stage:<13}{_model(step.config)[-57:]:<58}{rate or 0:>9.2f}"
                     f"{_duration(estimate) if estimate is not None else 'not measured':>10}")
    lines.append(f"total (measured stages): {_duration(seconds)} on one process")
    return "\n".join(lines)
