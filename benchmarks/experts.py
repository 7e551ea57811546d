"""Throughput of each expert: the batched ``datasets.map`` against a naive per-clip loop.

The naive loop is how the reference scripts of the field run an expert: one clip at a time, decoding
the file for each model. Both use the same tiny model, the same clips and the same expert code, so the
ratio measures batching and shared decoding alone. Prints clips/s and the ratio, measured in this run.

With ``--save FILE`` it then times every step of the config's whole pipeline (fusion, filter and QA
included) in one batched run and writes clips/s per stage: the figures ``run --dry-run
--throughput FILE`` estimates from (``fusion_datasets/resources/throughput.json`` is such a file).

    python benchmarks/experts.py --clips 64 --seconds 5 --batch-size 16
    python benchmarks/experts.py --config small --save throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import datasets

from fusion_datasets.experts import ExpertChain
from fusion_datasets.pipeline.config import (
    OutputConfig,
    PipelineConfig,
    build_steps,
    load_config,
    tiny_zoo_dir,
    uses_tiny_zoo,
)
from fusion_datasets.pipeline.dryrun import step_model
from fusion_datasets.pipeline.executors.local import LocalExecutor
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.work import Work
from fusion_datasets.registry import EXPERT_STAGES
from fusion_datasets.testing import media
from fusion_datasets.testing.zoo import build_tiny_zoo


def synthetic_clips(folder: Path, count: int, seconds: float) -> datasets.Dataset:
    """``count`` clips cycling through speech, music, noise and mixtures, half of them with a video."""
    makers = [
        lambda seed: media.speech(seconds, 16000, text=f"clip number {seed}"),
        lambda seed: media.music(seconds, 44100, channels=2, bpm=90 + seed),
        lambda seed: media.noise(seconds, 22050, seed=seed),
        lambda seed: media.mix(media.music(seconds, 16000, bpm=100), media.noise(seconds, 16000, seed=seed)),
    ]
    audio, video = [], []
    for index in range(count):
        signal = makers[index % len(makers)](index)
        rate = {1: 44100, 2: 22050}.get(index % len(makers), 16000)
        audio.append(str(media.write_audio(folder / f"{index}.wav", signal, rate)))
        clip_video = folder / f"{index}.mp4"
        if index % 2:
            media.write_video(clip_video, seconds, fps=5, size=(64, 48))
        video.append(str(clip_video) if index % 2 else None)
    # a music score on every row so that the music captioner, which the tagger gates, runs on all clips
    columns = {"id": [str(i) for i in range(count)], "audio": audio, "video": video,
               "music_score": [1.0] * count}
    return datasets.Dataset.from_dict(columns)


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def clips_per_second(run, count: int) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def pipeline_throughput(ds: datasets.Dataset, steps: list, batch_size: int) -> dict[str, float]:
    """Clips/s of each step of a whole-pipeline run by the local executor (its per-stage counters)."""
    plan = Plan(tuple(steps))
    config = PipelineConfig(output=OutputConfig(batch_size=batch_size))
    _, counters = LocalExecutor(plan, config).run_part(ds, [Work(tuple(plan.stages), tuple(range(ds.num_rows)))])
    return {stage: round(ds.num_rows / counts["seconds"], 3) for stage, counts in counters.items()
            if counts.get("seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--config", default="tiny", help="a bundled config or YAML file whose models to time")
    parser.add_argument("--save", type=Path, help="also time the whole pipeline and write clips/s per stage")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        ds = synthetic_clips(Path(tmp), args.clips, args.seconds)
        if uses_tiny_zoo(args.config):
            build_tiny_zoo(tiny_zoo_dir())
        steps = build_steps(load_config(args.config))
        experts = [step for step in steps if step.stage in EXPERT_STAGES]
        for expert in experts:  # load every model once, outside the timings
            expert(ds.select(range(2))[:])
        rows = ds.to_dict()
        print(f"{args.clips} clips of {args.seconds:g} s, batch size {args.batch_size}, {device_name()}")
        print(f"{'expert':<26}{'batched clips/s':>16}{'per-clip clips/s':>18}{'ratio':>8}")
        for expert in [*experts, ExpertChain(experts)]:
            batched = clips_per_second(
                lambda expert=expert: ds.map(expert, batched=True, batch_size=args.batch_size, with_rank=True,
                               features=expert.output_features(ds.features), load_from_cache_file=False),
                args.clips,
            )
            naive = clips_per_second(
                lambda expert=expert: [expert({name: [values[i]] for name, values in rows.items()})
                         for i in range(args.clips)],
                args.clips,
            )
            name = type(expert).__name__
            print(f"{name:<26}{batched:>16.2f}{naive:>18.2f}{batched / naive:>7.2f}x")
        if args.save:
            figures = {
                "measured_on": f"{args.config} config on {device_name()}, batch size {args.batch_size}, "
                               f"{time.strftime('%Y-%m-%d')}",
                "clip_seconds": args.seconds,
                "clips_per_second": pipeline_throughput(ds, steps, args.batch_size),
                "models": {step.stage: step_model(step.config) for step in steps},  # what --dry-run prices with them
            }
            args.save.write_text(json.dumps(figures, indent=2) + "\n")
            print(f"clips/s per stage of the whole pipeline: {figures['clips_per_second']} -> {args.save}")


if __name__ == "__main__":
    main()
