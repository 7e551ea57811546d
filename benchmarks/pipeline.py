"""The runner's own costs, measured in one run each:

1. ``llm``: the fusion and QA stages over N clips against a local OpenAI-compatible stub server, streamed
   by the local executor at ``max_concurrency`` (a re-ask or the next clip is sent as soon as a request
   finishes), against the batch-by-batch way (a ``datasets.map`` of 16 clips per batch, each batch waiting
   for its slowest answer), on a server with a fixed latency and on one with a long tail (one request in
   ten takes ``--tail`` seconds).
2. ``rss``: the peak RSS of ``fusion-datasets run tiny`` on 16 and on 160 clips with the same part size.
3. ``rerun``: a rerun with a changed fusion config (``fusion.max_new_tokens``) against the first run:
   the experts are not rerun.

    python benchmarks/pipeline.py llm --clips 256
    python benchmarks/pipeline.py rss rerun
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets

from fusion_datasets.chat.backends import ServerBackendConfig
from fusion_datasets.experts.chain import ExpertChain
from fusion_datasets.llm.fusion import CaptionFuser
from fusion_datasets.llm.qa import QAGenerator
from fusion_datasets.pipeline.config import PipelineConfig
from fusion_datasets.pipeline.executors.local import LocalExecutor
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.work import Work
from fusion_datasets.testing import media
from fusion_datasets.testing.stub_chat import StubChatServer
from fusion_datasets.testing.zoo.fixed_answer import FUSION_ANSWER, QA_ANSWER

MAP_BATCH = 16


def _answer(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    return QA_ANSWER if "qa_pairs" in prompt else FUSION_ANSWER


def _cues(clips: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "id": [f"clip-{index}" for index in range(clips)],
        "audio": [None] * clips,
        "audio_tags": [[{"label": "Dog", "score": 0.9}]] * clips,
        "sound_caption": [f"A dog barks, clip {index}." for index in range(clips)],
    })


def _steps(url: str, concurrency: int) -> list:
    backend = ServerBackendConfig(model="stub", base_urls=(url,), max_concurrency=concurrency,
                            token_env=None)
    return [CaptionFuser(backend=backend), QAGenerator(backend=backend)]


def _streamed(ds: datasets.Dataset, url: str, concurrency: int) -> datasets.Dataset:
    plan = Plan(tuple(_steps(url, concurrency)))
    cues, _ = LocalExecutor(plan, PipelineConfig()).run_part(ds, [Work(tuple(plan.stages), tuple(range(ds.num_rows)))])
    return cues


def _batch_by_batch(ds: datasets.Dataset, url: str, concurrency: int) -> datasets.Dataset:
    for step in _steps(url, concurrency):
        chain = ExpertChain([step])
        ds = ds.map(chain, batched=True, batch_size=MAP_BATCH, features=chain.output_features(ds.features),
                    load_from_cache_file=False)
    return ds


def bench_llm(args: argparse.Namespace) -> None:
    ds = _cues(args.clips)
    servers = {
        f"fixed {args.latency * 1000:.0f} ms": lambda request: args.latency,
        f"long tail (1 in 10: {args.tail:g} s)": lambda request: args.tail if hash(
            request["messages"][-1]["content"]) % 10 == 0 else args.latency,
    }
    print(f"fusion + QA over {args.clips} clips; stub server; streaming at max_concurrency {args.concurrency} "
          f"vs map batches of {MAP_BATCH}")
    print(f"{'server':<28}{'batch-by-batch s':>18}{'streaming s':>13}{'speed-up':>10}{'peak in flight':>16}")
    for name, latency in servers.items():
        with StubChatServer(_answer, latency) as server:
            start = time.perf_counter()
            old = _batch_by_batch(ds, server.base_url, args.concurrency)
            batched = time.perf_counter() - start
            server.peak_in_flight = 0
            start = time.perf_counter()
            new = _streamed(ds, server.base_url, args.concurrency)
            streamed = time.perf_counter() - start
            peak = server.peak_in_flight
        assert sum(1 for caption in new["caption"] if caption) == sum(1 for caption in old["caption"] if caption)
        print(f"{name:<28}{batched:>18.2f}{streamed:>13.2f}{batched / streamed:>9.1f}x{peak:>16}")


def _run_tiny(clips: Path, output: Path, *extra: str) -> tuple[float, int]:
    """Seconds and peak RSS (MiB) of one ``fusion-datasets run tiny`` in a fresh process."""
    code = ("import resource, sys; from fusion_datasets.cli import main; code = main(sys.argv[1:]); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    command = [sys.executable, "-c", code, "run", "tiny", "--input", str(clips), "--output", str(output),
               "--set", "output.shard_size=16", "--set", "experts.separation.enabled=false", *extra]
    start = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    seconds = time.perf_counter() - start
    if finished.returncode:
        raise RuntimeError(finished.stderr[-3000:])
    rss = next(int(line.split()[1]) for line in finished.stdout.splitlines() if line.startswith("MAXRSS"))
    return seconds, rss // 1024


def _clips(folder: Path, count: int) -> Path:
    for index in range(count):
        media.write_audio(folder / f"clip-{index:04d}.wav", media.noise(2.0, 16000, seed=index), 16000)
    return folder


def bench_rss(args: argparse.Namespace, tmp: Path) -> None:
    small = _run_tiny(_clips(tmp / "clips16", 16), tmp / "out16")[1]
    large = _run_tiny(_clips(tmp / "clips160", 160), tmp / "out160")[1]
    print(f"peak RSS of run tiny, parts of 16: 16 clips {small} MiB, 160 clips {large} MiB, "
          f"ratio {large / small:.2f}x")


def bench_rerun(args: argparse.Namespace, tmp: Path) -> None:
    clips = _clips(tmp / "clips-rerun", args.rerun_clips)
    first, _ = _run_tiny(clips, tmp / "out-rerun")
    rerun, _ = _run_tiny(clips, tmp / "out-rerun", "--set", "fusion.max_new_tokens=97")
    stages = json.loads((tmp / "out-rerun" / "stats.json").read_text())["stages"]
    rows = {stage: counts["rows"] for stage, counts in stages.items()}
    print(f"run tiny on {args.rerun_clips} clips: first run {first:.1f} s, rerun with another fusion config "
          f"{rerun:.1f} s, ratio {rerun / first:.2f}x; rows per stage over both runs: {rows}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="+", choices=["llm", "rss", "rerun"])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--tail", type=float, default=2.0)
    parser.add_argument("--rerun-clips", type=int, default=32)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        for what in args.what:
            if what == "llm":
                bench_llm(args)
            elif what == "rss":
                bench_rss(args, Path(tmp))
            else:
                bench_rerun(args, Path(tmp))


if __name__ == "__main__":
    main()
