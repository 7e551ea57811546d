"""The Ray executor against the local one, measured in one run each:

1. ``tiny``: ``run tiny`` on N clips (2 CPUs here) by the local executor and by Ray; Ray's start-up
   (``ray.init``) is timed apart.
2. ``overlap``: a plan of a CPU-bound step (``--busy`` ms of one core's work per clip) and a wait-bound LLM
   stage (fusion against a local stub server answering in ``--latency`` s, ``--concurrency`` in flight):
   the local executor runs one stage after the other; Ray streams blocks from one to the other, so the
   server waits while the CPU works.

    python benchmarks/ray_executor.py tiny overlap
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import datasets

from fusion_datasets.chat.backends import ServerBackendConfig
from fusion_datasets.llm.fusion import CaptionFuser
from fusion_datasets.pipeline.config import load_config, tiny_zoo_dir
from fusion_datasets.pipeline.executors.local import LocalExecutor
from fusion_datasets.pipeline.executors.ray import RayExecutor
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.runner import PipelineRunner
from fusion_datasets.pipeline.work import PartWork, Work
from fusion_datasets.testing import media
from fusion_datasets.testing.dummies import Busy, spin
from fusion_datasets.testing.stub_chat import StubChatServer
from fusion_datasets.testing.zoo import build_tiny_zoo
from fusion_datasets.testing.zoo.fixed_answer import FUSION_ANSWER


def iterations_for(milliseconds: float) -> int:
    """How many loop iterations take ``milliseconds`` on one idle core of this machine."""
    start = time.perf_counter()
    spin(1_000_000)
    return int(1_000_000 * milliseconds / 1000 / (time.perf_counter() - start))


def bench_tiny(args: argparse.Namespace, tmp: Path) -> None:
    import ray

    clips = tmp / "clips"
    for index in range(args.clips):
        media.write_audio(clips / f"clip{index:03d}.wav", media.noise(2.0, 16000, seed=index), 16000)
    overrides = [f"input.path={clips}", "experts.separation.enabled=false", "output.shard_size=16"]
    build_tiny_zoo(tiny_zoo_dir())  # outside the timings
    start = time.perf_counter()
    PipelineRunner(load_config("tiny", [*overrides, f"output.path={tmp / 'local'}"]), rank=0, world_size=1).run()
    local = time.perf_counter() - start
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    config = load_config("tiny", [*overrides, f"output.path={tmp / 'ray'}", "engine=ray"])
    PipelineRunner(config, rank=0, world_size=1).run()
    on_ray = time.perf_counter() - start
    ray.shutdown()
    print(f"run tiny, {args.clips} clips, {os.cpu_count()} CPUs: local {local:.1f} s, Ray {on_ray:.1f} s "
          f"(+ {startup:.1f} s to start Ray), Ray/local {on_ray / local:.2f}x")


def bench_overlap(args: argparse.Namespace) -> None:
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ids = [f"clip{index:03d}" for index in range(args.overlap_clips)]
    rows = datasets.Dataset.from_dict({"id": ids, "audio": [None] * len(ids)})
    with StubChatServer(lambda request: FUSION_ANSWER, args.latency) as server:
        backend = ServerBackendConfig(model="stub", base_urls=(server.base_url,),
                                max_concurrency=args.concurrency, token_env=None)
        plan = Plan((Busy(iterations=iterations_for(args.busy)), CaptionFuser(backend=backend)))
        work = [Work(tuple(plan.stages), tuple(range(len(ids))))]
        config = load_config("tiny", ["output.batch_size=8", f"ray.resources.fusion.batch_size={8 * args.concurrency}",
                                      "ray.resources.fusion.num_cpus=0.5"])
        start = time.perf_counter()
        LocalExecutor(plan, config).run_part(rows, work)
        local = time.perf_counter() - start
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        parts = [(PartWork("part-bench-0000", tuple(ids), tuple(work)), rows)]
        list(RayExecutor(plan, config).run(parts))  # actors warmed up, outside the timing
        start = time.perf_counter()
        list(RayExecutor(plan, config).run(parts))
        streamed = time.perf_counter() - start
        ray.shutdown()
    print(f"{len(ids)} clips: a {args.busy:g} ms/clip CPU step then fusion on a {args.latency * 1000:.0f} ms server "
          f"({args.concurrency} in flight): local, stage after stage {local:.2f} s; Ray streaming {streamed:.2f} s; "
          f"ratio {local / streamed:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="+", choices=["tiny", "overlap"])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--overlap-clips", type=int, default=512)
    parser.add_argument("--busy", type=float, default=25.0)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory() as tmp:
        for what in args.what:
            bench_tiny(args, Path(tmp)) if what == "tiny" else bench_overlap(args)


if __name__ == "__main__":
    main()
