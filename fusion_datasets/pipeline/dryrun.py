"""``run --dry-run``: what a run would do, and a compute plan: per stage clips/s, GPU (or server) time, the total
on one GPU and on K GPUs, and the bottleneck stage.

Each stage's figure comes from the best source there is for the very model the config names, and says which:

1. a file given with ``--throughput`` (``benchmarks/gpu/run.sh``'s or ``benchmarks/experts.py --save``'s);
2. the GPU benchmark kit's file for the GPU named by ``--gpu``, bundled in ``fusion_datasets/resources/gpu_kit/``;
3. a published measurement of the model (``resources/published_throughput.json``, each with its source);
4. the tiny zoo's own figures on a 2-core CPU (``resources/throughput.json``), for the tiny models only;

else the figure is unknown. A figure is used only for a stage whose file names that stage's model (a kit file
names each stage's checkpoint; ``models`` in the other files): figures of a tiny model never price a 7B one.
A served stage's figure is one server's at the configured concurrency: its time is server time, not GPU time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fusion_datasets.pipeline.config import PipelineConfig
from fusion_datasets.public import model_reference

GPUS = 8  # the "K GPUs" of the total when --gpus is not given: one node


@dataclass(frozen=True)
class Throughput:
    """Clips per second per stage, the model each was measured with, and where the figures come from."""

    clips_per_second: dict[str, float]
    measured_on: str = "unknown"  # device and models, in words
    clip_seconds: float | None = None  # the length of the benchmark's clips
    models: dict[str, str] = field(default_factory=dict)  # stage -> the model its figure was measured with


@dataclass(frozen=True)
class Figure:
    """One stage's clips/s (``None``: unknown), its source in a few words and, for a published one, the details."""

    clips_per_second: float | None
    source: str
    citation: str | None = None


def _parse(data: dict[str, Any]) -> Throughput:
    stages = data.get("stages") or {}  # a GPU kit file: each stage's detail names its checkpoint
    models = {**{name: stage["model"] for name, stage in stages.items() if stage.get("model")},
              **data.get("models", {})}
    return Throughput({stage: float(value) for stage, value in data["clips_per_second"].items()},
                      data.get("measured_on", "unknown"), data.get("clip_seconds"), models)


def _resource(name: str) -> Any:
    return resources.files("fusion_datasets").joinpath(f"resources/{name}")


def load_throughput(path: str | Path | None = None) -> Throughput:
    """Figures written by ``benchmarks/experts.py --save FILE`` or ``benchmarks/gpu/benchmark.py --output FILE``;
    the tiny zoo's bundled ones without ``path``."""
    text = _resource("throughput.json").read_text("utf-8") if path is None else Path(path).read_text("utf-8")
    return _parse(json.loads(text))


def gpu_kit_files() -> dict[str, Throughput]:
    """The bundled GPU kit files, by the GPU they were measured on (the kit's ``kit.device``)."""
    folder = _resource("gpu_kit")
    files = sorted(item for item in folder.iterdir() if item.name.endswith(".json")) if folder.is_dir() else []
    return {data["kit"]["device"]: _parse(data) for data in (json.loads(item.read_text("utf-8")) for item in files)}


def published_figures() -> list[dict[str, Any]]:
    """Published measurements: ``model``, ``gpu``, ``clips_per_second``, ``derivation``, ``source``."""
    return json.loads(_resource("published_throughput.json").read_text("utf-8"))


def _configured_model(step_config: Any) -> str:
    """The model a step's config names (its backend's, for a served or LLM step): a Hub id or a path."""
    backend = getattr(step_config, "backend", None)
    return str(getattr(step_config, "model", None) or (backend.model if backend else "?"))


def step_model(step_config: Any) -> str:
    """The model a step runs, as an output names it; a model taken from a ``repo`` folder (Demucs') is named
    with it: the zoo's tiny ``htdemucs`` is not Demucs' own."""
    model = model_reference(_configured_model(step_config))[0]
    repo = getattr(step_config, "repo", None)
    return f"{model_reference(str(repo))[0]}/{model}" if repo else model


def _same_model(measured: str | None, model: str) -> bool:
    return measured is not None and model_reference(measured)[0] == model


def stage_figure(stage: str, model: str, throughput: Throughput | None = None, gpu: str | None = None) -> Figure:
    """The figure for ``stage`` running ``model``: from ``throughput`` (the user's file), the kit's file for
    ``gpu``, a published measurement, or the tiny zoo's; each used only where it was measured with ``model``."""
    kits = {device: figures for device, figures in gpu_kit_files().items() if gpu and gpu.lower() in device.lower()}
    files = [*([(throughput, "")] if throughput else []),
             *((figures, "GPU kit, ") for figures in kits.values()),
             (load_throughput(), "")]
    for figures, kind in files[:-1]:
        if stage in figures.clips_per_second and _same_model(figures.models.get(stage), model):
            return Figure(figures.clips_per_second[stage], f"{kind}{figures.measured_on}")
    for entry in published_figures():
        if _same_model(entry["model"], model):
            return Figure(entry["clips_per_second"], f"published, {entry['gpu']}",
                          f"{entry['model']}: {entry['derivation']}. Source: {entry['source']}")
    bundled = files[-1][0]
    if stage in bundled.clips_per_second and _same_model(bundled.models.get(stage), model):
        return Figure(bundled.clips_per_second[stage], bundled.measured_on)
    return Figure(None, "unknown: not measured with this model")


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def compute_plan(config: PipelineConfig, todo: dict[str, int], throughput: Throughput | None = None,
                 gpu: str | None = None, gpus: int = GPUS) -> list[str]:
    """The plan's lines: per stage its clips to do, clips/s, GPU or server time and source; then the totals."""
    from fusion_datasets.pipeline.plan import Plan

    lines = [f"{'stage':<13}{'model':<44}{'clips':>9}{'clips/s':>9}{'time':>12}  source"]
    device_seconds: dict[str, float] = {}
    unknown: list[str] = []
    citations: list[str] = []
    for step in Plan.from_config(config).steps:
        model = step_model(step.config)
        figure = stage_figure(step.stage, model, throughput, gpu)
        clips = todo.get(step.stage, 0)
        served = step.served_concurrency
        seconds = clips / figure.clips_per_second if figure.clips_per_second else None
        if seconds is None:
            unknown.append(step.stage)
        elif not served:
            device_seconds[step.stage] = seconds
        source = figure.source
        if figure.citation:
            if figure.citation not in citations:
                citations.append(figure.citation)
            source += f" [{citations.index(figure.citation) + 1}]"
        where = f" (served x{served})" if served else ""
        time = "?" if seconds is None else _duration(seconds) + (" srv" if served else "")
        rate = f"{figure.clips_per_second:.2f}" if figure.clips_per_second else "?"
        shown = _configured_model(step.config) + where
        lines.append(f"{step.stage:<13}{shown[-43:]:<44}{clips:>9}{rate:>9}{time:>12}  {source}")
    total = sum(device_seconds.values())
    # nothing left to do (a rerun of a complete output): no stage holds the others up
    bottleneck = max(device_seconds, key=device_seconds.__getitem__) if total else None
    lines.append(f"stages computed here, with a figure: {total / 3600:.1f} GPU-hours (device-hours on the device each "
                 f"source names): {_duration(total)} on one GPU, {_duration(total / gpus)} on {gpus} GPUs sharing the "
                 "clips" + (f"; the bottleneck of those: {bottleneck} "
                            f"({100 * device_seconds[bottleneck] / total:.0f}%)" if bottleneck else ""))
    if unknown:
        lines.append(f"not counted, no figure for their model: {', '.join(unknown)}"
                     + (f" (no GPU kit file for {gpu} is bundled)" if gpu and not any(
                         gpu.lower() in device.lower() for device in gpu_kit_files()) else "")
                     + "; measure them with benchmarks/gpu/run.sh (in process) or on your server and pass the file "
                     "with --throughput")
    if any(step.served_concurrency for step in Plan.from_config(config).steps):
        lines.append("served stages ('(served xC)'): their time (' srv') is one server's at concurrency C, on its own "
                     "GPUs, not in the GPU-hours")
    lines += [f"[{index}] {citation}" for index, citation in enumerate(citations, 1)]
    return lines


def describe_plan(config: PipelineConfig, throughput: Throughput | None = None, clips: int | None = None,
                  gpu: str | None = None, gpus: int = GPUS) -> str:
    """The plan of ``run`` with ``config``, as text: clips, parts (done and to do), steps, the compute plan.

    It reads the input and the output's run state as ``run`` would, and writes nothing; with ``clips`` it reads
    neither and prices that many clips through every stage.
    """
    from fusion_datasets.pipeline.plan import Plan
    from fusion_datasets.pipeline.runner import PipelineRunner

    if clips is not None:
        lines = [f"config {config.name}: {clips} clips (--clips; the input and the output are not read)"]
        todo = dict.fromkeys(Plan.from_config(config).stages, clips)
    else:
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
        ]
    if throughput:
        lines.append(f"estimates from {throughput.measured_on}"
                     + (f", {throughput.clip_seconds:g} s clips" if throughput.clip_seconds else "")
                     + " where it measured the config's model")
    return "\n".join([*lines, *compute_plan(config, todo, throughput, gpu, gpus)])
