"""Where the paper pipeline's GPU time goes: each expert at its real size, on one GPU, without network.

The experts are those of ``paper-inprocess`` (the ``paper`` config with every expert in this process, the video
expert at 7B); ``paper`` itself serves the audio LLM and a 72B VLM, whose figures a served engine gives.

For each stage it builds the model with random weights on the GPU (see ``gpu_models.py``), then measures on the
same synthetic clips:

- ``bare``: the model call on ready tensors (forward, or ``generate`` at a fixed length), batch size swept:
  the ceiling;
- ``toolkit``: the toolkit's own expert, built from ``paper-inprocess``'s options and pointed at the saved model
  folder (decode, resample, processor, model, parse), at the bare call's best batch size;
- ``naive``: the same expert called one clip at a time.

It prints a table and writes the JSON that ``fusion-datasets run --dry-run --throughput FILE`` reads. A stage
that would not fit the time budget is skipped and says so; ``--merge FILE`` adds stages to an earlier run's.

    python benchmarks/gpu/benchmark.py --size real --device cuda --budget-seconds 540 --output gpu.json
    python benchmarks/gpu/benchmark.py --size tiny --device cpu --batch-sizes 1,2 --output tiny.json
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import gpu_models
import gpu_report
import numpy as np
from gpu_stages import CONFIG, STAGES, Clips, Stage

from fusion_datasets import runtime, synthetic
from fusion_datasets.pipeline.config import tiny_zoo_dir
from fusion_datasets.testing.zoo import build_tiny_model

logger = logging.getLogger("gpu_benchmark")
RATE = 44100
# The small models first: when the budget runs out, the stages left are the 7B ones, which a second call
# (--stages ... --merge) can measure alone.
MODEL_ORDER = ("htdemucs", "whisper", "ast", "clap", "qwen2-audio", "qwen2.5-vl")
# Seconds a model's build, save, load and measurements take at least on a GPU, by model (real size): a
# stage that cannot start with this much budget left is skipped rather than cut short.
LEAST_SECONDS = {"htdemucs": 30, "whisper": 60, "ast": 20, "qwen2-audio": 150, "qwen2.5-vl": 150, "clap": 20}


def paper_order(stage: str) -> int:
    return list(STAGES).index(stage) if stage in STAGES else len(STAGES)


def memory_folder(size: str) -> Path | None:
    """``/dev/shm`` where it holds a 7B model's folder (saved and loaded at memory speed), else ``None``."""
    shm = Path("/dev/shm")
    room = 40 * 2**30 if size == "real" else 2**30
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > room:
        return shm
    return None


class Clock:
    """The run's time budget."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def measured(device: str, run: Callable[[], Any]) -> tuple[float, float | None]:
    """Seconds ``run`` takes and the GPU memory peak (GiB) while it runs (``None`` on the CPU)."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    seconds = time.perf_counter() - start
    return seconds, (torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None)


def repeat(call: Callable[[], Any], times: int) -> None:
    for _ in range(times):
        call()


def rates(clips: int, seconds: float, peak: float | None, new_tokens: int | None) -> dict[str, Any]:
    return {"clips_per_second": round(clips / seconds, 4),
            "tokens_per_second": round(clips * new_tokens / seconds, 1) if new_tokens else None,
            "peak_gpu_memory_gib": None if peak is None else round(peak, 2)}


def make_clips(folder: Path, count: int, seconds: float, audio: str, video: str | None) -> Clips:
    """``count`` stereo 44.1 kHz clips of speech over music, as wav files (``audio="files"``, decoded by the
    toolkit) or arrays (``"arrays"``: where the machine's torchcodec cannot decode), and one video for all."""
    waveforms = [synthetic.mix(synthetic.speech(seconds, RATE, channels=2, text=f"clip number {index}", seed=index),
                               synthetic.music(seconds, RATE, channels=2, bpm=90 + index), gains=[1.0, 0.5])
                 for index in range(count)]
    if audio == "files":
        cells: list[Any] = [str(synthetic.write_audio(folder / f"{index}.wav", wave, RATE))
                            for index, wave in enumerate(waveforms)]
    else:
        cells = [{"array": wave, "sampling_rate": RATE} for wave in waveforms]
    if video is None:
        video = str(synthetic.write_video(folder / "clip.mp4", seconds, fps=25, size=(640, 360)))
    return Clips([wave.astype(np.float32) for wave in waveforms], RATE, cells, video)


def files_decode() -> bool:
    """Whether audio files can be decoded here (torchcodec finds FFmpeg's libraries)."""
    try:
        import soundfile  # noqa: F401 - writes the clips
        from torchcodec.decoders import AudioDecoder  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def bare_sweep(stage: Stage, model: Any, processor: Any, clips: Clips, expert: Any, device: str,
               batch_sizes: Sequence[int], repeats: int, clock: Clock) -> dict[str, Any]:
    """The bare model call at each batch size (one warm-up call, then ``repeats`` timed ones)."""
    import torch

    by_size: dict[str, Any] = {}
    for size in batch_sizes:
        if by_size and clock.left() <= 0:
            break
        call = partial(stage.call, model, stage.prepare(model, processor, clips, range(size), expert, device), expert,
                       stage.new_tokens)
        try:
            with torch.inference_mode():
                call()  # warm-up
                seconds, peak = measured(device, partial(repeat, call, repeats))
        except torch.OutOfMemoryError:  # the larger batch sizes would not fit either
            by_size[str(size)] = {"error": "out of memory"}
            del call
            torch.cuda.empty_cache()
            break
        by_size[str(size)] = rates(size * repeats, seconds, peak, stage.new_tokens)
    best = max((size for size in by_size if "error" not in by_size[size]),
               key=lambda size: by_size[size]["clips_per_second"])
    return {"by_batch_size": by_size, "best_batch_size": int(best), **by_size[best]}


def toolkit_runs(stage: Stage, folder: Path, clips: Clips, device: str, batch_size: int, naive_clips: int,
                 clock: Clock) -> dict[str, Any]:
    """The toolkit's expert over every clip in batches of ``batch_size``, then one clip at a time."""
    expert = stage.expert(str(folder), device, batch_size)
    count = len(clips.audio)
    load_seconds, _ = measured(device, lambda: expert(clips.batch(range(min(batch_size, count)))))  # loads, warms
    errors = []

    def run_batches() -> None:
        for start in range(0, count, batch_size):
            errors.extend(error for row in expert(clips.batch(range(start, min(start + batch_size, count))))["errors"]
                          for error in row)

    seconds, peak = measured(device, run_batches)
    result: dict[str, Any] = {"load_and_first_batch_seconds": round(load_seconds, 1),
                              "toolkit": rates(count, seconds, peak, stage.new_tokens)}
    if errors:
        raise RuntimeError(f"{stage.name}: the toolkit's expert recorded errors: {errors[:3]}")
    if clock.left() > 0 and naive_clips:
        seconds, peak = measured(device, lambda: [expert(clips.batch([row])) for row in range(naive_clips)])
        result["naive"] = rates(naive_clips, seconds, peak, stage.new_tokens)
    return result


def build(name: str, size: str, zoo: Path, folder: Path, device: str, dtype: Any, new_tokens: int | None) -> Any:
    tiny = build_tiny_model(gpu_models.SPECS[name].zoo, zoo)
    if name == "htdemucs":
        return gpu_models.build_demucs_folder(size, tiny, folder, device)
    return gpu_models.build_transformers_folder(name, size, tiny, folder, device, dtype, new_tokens)


def processor_of(name: str, folder: Path) -> Any:
    from transformers import AutoProcessor

    return None if name == "htdemucs" else AutoProcessor.from_pretrained(folder)


def measure_model(name: str, stages: list[Stage], args: argparse.Namespace, clips: Clips, work: Path,
                  clock: Clock) -> dict[str, dict[str, Any]]:
    """Build model ``name`` once, then measure each of its ``stages``: bare sweep, toolkit, naive."""
    import torch

    folder = work / name
    experts = {stage.name: stage.expert(str(folder), args.device, max(args.batch_sizes)) for stage in stages}
    # the toolkit's dtype for this model (Demucs runs in float32 whatever its config says)
    dtype = torch.float32 if name == "htdemucs" else runtime.resolve_dtype(experts[stages[0].name].config.dtype,
                                                                           args.device)
    start = time.perf_counter()
    model = build(name, args.size, args.zoo, folder, args.device, dtype, stages[0].new_tokens)
    build_seconds = time.perf_counter() - start
    processor = processor_of(name, folder)
    results: dict[str, dict[str, Any]] = {}
    for stage in stages:
        results[stage.name] = {
            "model": gpu_models.SPECS[name].hub_id, "size": args.size, "parameters": gpu_models.parameter_count(model),
            "dtype": str(dtype).removeprefix("torch."), "new_tokens": stage.new_tokens,
            "build_and_save_seconds": round(build_seconds, 1),
            "bare": bare_sweep(stage, model, processor, clips, experts[stage.name], args.device, args.batch_sizes,
                               args.repeats, clock),
        }
    del model  # the toolkit loads its own copy from the folder
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    for stage in stages:
        result = results[stage.name]
        result["batch_size"] = result["bare"]["best_batch_size"]
        result.update(toolkit_runs(stage, folder, clips, args.device, result["batch_size"], args.naive_clips, clock))
        result["toolkit"]["share_of_bare"] = round(result["toolkit"]["clips_per_second"]
                                                   / result["bare"]["clips_per_second"], 3)
        if "naive" in result:
            result["naive"]["batched_speedup"] = round(result["toolkit"]["clips_per_second"]
                                                       / result["naive"]["clips_per_second"], 2)
        else:
            result["note"] = "naive loop skipped" + (" (time budget)" if args.naive_clips else "")
    release(folder, args.device)
    return results


def release(folder: Path, device: str) -> None:
    """Free the models the toolkit loaded and the model folder (a 7B one is 16 GB: the next model needs room)."""
    import torch

    runtime.clear_model_cache()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    shutil.rmtree(folder, ignore_errors=True)


def summary(name: str, result: dict[str, Any]) -> str:
    parts = [f"{part} {result[part]['clips_per_second']:.2f} clips/s" for part in ("bare", "toolkit", "naive")
             if part in result]
    return f"{name} at batch size {result['batch_size']}: {', '.join(parts)}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("real", "tiny"), default="real",
                        help="real: the paper's architectures at full size; tiny: the tiny zoo's (CPU tests)")
    parser.add_argument("--device", default=None, help="cuda (default where there is one) or cpu")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--batch-sizes", default=None, help="bare batch sizes swept (default 1,4,16; tiny 1,2)")
    parser.add_argument("--clips", type=int, default=None, help="clips for the toolkit (default: the largest batch)")
    parser.add_argument("--naive-clips", type=int, default=None, help="clips for the naive loop (default 4; tiny 1)")
    parser.add_argument("--repeats", type=int, default=2, help="timed bare calls per batch size")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--max-new-tokens", type=int, help="cap the fixed generation lengths (quick CPU runs)")
    parser.add_argument("--budget-seconds", type=float, default=540.0,
                        help="stop starting stages once this is spent (the JSON is written after each model)")
    parser.add_argument("--audio", choices=("auto", "files", "arrays"), default="auto",
                        help="clips as wav files the toolkit decodes, or arrays (auto: files where torchcodec works)")
    parser.add_argument("--video", help="the mp4 every clip's video stage reads (default: made here with ffmpeg)")
    parser.add_argument("--work-dir", type=Path, help="where model folders go (default: /dev/shm, else a temp dir)")
    parser.add_argument("--zoo", type=Path, default=None, help="the tiny zoo (processors); default: its usual folder")
    parser.add_argument("--output", type=Path, default=Path("gpu_throughput.json"))
    parser.add_argument("--merge", type=Path, help="an earlier run's JSON: its stages not measured now are kept")
    args = parser.parse_args(argv)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.size == "tiny"
    args.batch_sizes = [int(size) for size in (args.batch_sizes or ("1,2" if tiny else "1,4,16")).split(",")]
    args.clips = args.clips or max(args.batch_sizes)
    args.naive_clips = min(args.clips, args.naive_clips if args.naive_clips is not None else 1 if tiny else 4)
    args.stages = [name.strip() for name in args.stages.split(",") if name.strip()]
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown stage {unknown[0]!r}; stages: {', '.join(STAGES)}")
    if args.audio == "auto":
        args.audio = "files" if files_decode() else "arrays"
    args.zoo = args.zoo or tiny_zoo_dir()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    import transformers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    transformers.logging.set_verbosity_error()  # generate's notes on max_length, once per call
    transformers.utils.logging.disable_progress_bar()
    args = parse_args(argv)
    clock = Clock(args.budget_seconds)
    by_model: dict[str, list[Stage]] = {}
    for stage in sorted(STAGES.values(), key=lambda stage: MODEL_ORDER.index(stage.model)):
        if stage.name in args.stages:
            if stage.new_tokens and args.max_new_tokens:
                stage = replace(stage, new_tokens=min(stage.new_tokens, args.max_new_tokens))
            by_model.setdefault(stage.model, []).append(stage)  # sound and music share one model
    with tempfile.TemporaryDirectory(prefix="gpu-kit-", dir=args.work_dir or memory_folder(args.size)) as tmp:
        work = Path(tmp)
        clips = make_clips(work / "clips", args.clips, args.clip_seconds, args.audio, args.video)
        results = gpu_report.earlier_stages(args.merge) if args.merge else {}
        kit = {"size": args.size, "device": device_name(args.device), "audio_input": args.audio,
               "batch_sizes": args.batch_sizes, "clips": args.clips, "naive_clips": args.naive_clips,
               "repeats": args.repeats, "skipped": [], "failed": {}}
        measured_on = (f"{CONFIG} config, {'real-size random-weight' if args.size == 'real' else 'tiny-zoo'} models on "
                       f"{kit['device']}, GPU benchmark kit, {time.strftime('%Y-%m-%d')}")
        for name, stages in by_model.items():
            need = LEAST_SECONDS[name] if args.size == "real" else 0
            if clock.left() < need:
                logger.warning("skipping %s: %.0f s of budget left, it needs about %d", name, clock.left(), need)
                kit["skipped"] += [stage.name for stage in stages]
                continue
            logger.info("%s: building and measuring %s", name, ", ".join(stage.name for stage in stages))
            try:
                measurements = measure_model(name, stages, args, clips, work, clock)
            except Exception as error:  # one model's failure must not cost the other models' measurements
                logger.exception("%s failed", name)
                kit["failed"].update({stage.name: f"{type(error).__name__}: {error}"[:500] for stage in stages})
                release(work / name, args.device)
                continue
            for stage, result in measurements.items():
                logger.info("%s", summary(stage, result))
            results = {stage: result for stage, result in sorted({**results, **measurements}.items(),
                                                                  key=lambda item: paper_order(item[0]))}
            gpu_report.write(args.output, gpu_report.throughput_file(results, measured_on, args.clip_seconds, kit))
        document = gpu_report.throughput_file(results, measured_on, args.clip_seconds, kit)
        gpu_report.write(args.output, document)
    print(gpu_report.table(document))
    print(f"audio input: {args.audio}" + ("" if args.audio == "files" else " (decoding not timed)")
          + "; fixed-length generation, new tokens per clip: "
          f"{ {stage.name: stage.new_tokens for stages in by_model.values() for stage in stages if stage.new_tokens} }")
    print(f"wrote {args.output}" + (f"; skipped (time budget): {', '.join(kit['skipped'])}" if kit["skipped"] else ""))
    for stage, error in kit["failed"].items():
        print(f"FAILED {stage}: {error}")
    return 1 if kit["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
