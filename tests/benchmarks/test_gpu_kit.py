"""The GPU benchmark kit (benchmarks/gpu): it runs end to end on the CPU at tiny sizes and writes figures that
``run --dry-run --throughput`` reads; its bundled configs are the real checkpoints' sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fusion_datasets.cli import main
from fusion_datasets.pipeline.dryrun import load_throughput
from fusion_datasets.testing import media

KIT = Path(__file__).parents[2] / "benchmarks" / "gpu"
STAGES = ("separation", "speech", "tagging", "sound", "music", "visual", "clap_filter")
# Parameters of the Hub checkpoints paper-inprocess names (their model cards and safetensors indexes).
CHECKPOINT_PARAMETERS = {"whisper": 1.543e9, "ast": 86.6e6, "qwen2-audio": 8.397e9, "qwen2.5-vl": 8.292e9,
                         "clap": 153.5e6, "htdemucs": 41.5e6}


@pytest.fixture
def kit(monkeypatch):
    monkeypatch.syspath_prepend(str(KIT))
    import gpu_models
    import gpu_report

    return gpu_models, gpu_report


def _benchmark(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(KIT / "benchmark.py"), "--size", "tiny", "--device", "cpu", "--clip-seconds", "2",
            "--batch-sizes", "1", "--repeats", "1", "--max-new-tokens", "8", "--work-dir", str(tmp_path), *extra]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def test_the_kit_measures_every_paper_stage_and_the_dry_run_reads_its_file(tmp_path, tiny_zoo, capsys):
    output = tmp_path / "gpu_throughput.json"
    done = _benchmark(tmp_path, "--output", str(output))

    throughput = load_throughput(output)
    assert sorted(throughput.clips_per_second) == sorted(STAGES)  # fusion and QA are left to a served engine
    assert all(rate > 0 for rate in throughput.clips_per_second.values())
    assert throughput.clip_seconds == 2.0 and "tiny-zoo models on CPU" in throughput.measured_on
    document = json.loads(output.read_text())
    for name, stage in document["stages"].items():
        assert stage["batch_size"] == 1 and stage["bare"]["best_batch_size"] == 1
        assert stage["toolkit"]["clips_per_second"] == throughput.clips_per_second[name]
        assert stage["toolkit"]["share_of_bare"] == pytest.approx(
            stage["toolkit"]["clips_per_second"] / stage["bare"]["clips_per_second"], rel=1e-2)
        assert stage["naive"]["batched_speedup"] > 0 and stage["naive"]["peak_gpu_memory_gib"] is None
        generates = name in ("speech", "sound", "music", "visual")
        assert stage["new_tokens"] == (8 if generates else None)
        assert (stage["toolkit"]["tokens_per_second"] is not None) == generates
    projection = document["projection"]
    assert projection["clips"] == 1_200_000 and sorted(projection["gpu_hours"]) == sorted(STAGES)
    assert projection["total_gpu_hours"] == pytest.approx(sum(projection["gpu_hours"].values()), abs=0.1)
    assert any("served engine" in assumption for assumption in projection["assumptions"])
    assert "GPU-hours for 1,200,000 clips" in done.stdout and "fixed-length generation" in done.stdout

    clips = tmp_path / "clips"
    media.write_audio(clips / "a.wav", media.speech(2.0, 16000), 16000)
    assert main(["run", "paper-inprocess", "--input", str(clips), "--output", str(tmp_path / "out"), "--dry-run",
                 "--throughput", str(output)]) == 0
    plan = capsys.readouterr().out
    assert f"estimates from {throughput.measured_on}, 2 s clips" in plan
    speech = next(line for line in plan.splitlines() if line.startswith("speech"))
    assert "openai/whisper-large-v3" in speech and f"{throughput.clips_per_second['speech']:.2f}" in speech
    assert "not measured" in next(line for line in plan.splitlines() if line.startswith("fusion"))


def test_a_spent_budget_skips_every_stage_and_still_writes_a_readable_file(tmp_path, tiny_zoo):
    output = tmp_path / "gpu_throughput.json"
    done = _benchmark(tmp_path, "--output", str(output), "--budget-seconds", "0", "--stages", "tagging,visual")
    assert load_throughput(output).clips_per_second == {}
    assert json.loads(output.read_text())["kit"]["skipped"] == ["tagging", "visual"]
    assert "skipped (time budget): tagging, visual" in done.stdout


def test_a_failing_model_costs_only_its_own_stages(tmp_path, tiny_zoo):
    output = tmp_path / "gpu_throughput.json"
    argv = [sys.executable, str(KIT / "benchmark.py"), "--size", "tiny", "--device", "cpu", "--clip-seconds", "2",
            "--batch-sizes", "1", "--repeats", "1", "--naive-clips", "0", "--stages", "visual,tagging",
            "--video", str(tmp_path / "missing.mp4"), "--output", str(output), "--work-dir", str(tmp_path)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 1 and "FAILED visual: MediaError" in done.stdout
    document = json.loads(output.read_text())
    assert list(document["clips_per_second"]) == ["tagging"] and list(document["kit"]["failed"]) == ["visual"]
    tagging = document["stages"]["tagging"]
    assert tagging["note"] == "naive loop skipped" and "naive" not in tagging


def test_merge_keeps_the_stages_of_an_earlier_run(tmp_path, kit):
    _, gpu_report = kit
    first = {"speech": {"toolkit": {"clips_per_second": 10.0}}}
    path = tmp_path / "gpu.json"
    gpu_report.write(path, gpu_report.throughput_file(first, "a GPU", 10.0, {}))
    merged = {**gpu_report.earlier_stages(path), "visual": {"toolkit": {"clips_per_second": 2.0}}}
    document = gpu_report.throughput_file(merged, "a GPU", 10.0, {})
    assert document["clips_per_second"] == {"speech": 10.0, "visual": 2.0}
    # 1.2M clips at 10 and 2 clips/s: 33.3 and 166.7 GPU-hours
    assert document["projection"]["gpu_hours"] == {"speech": 33.3, "visual": 166.7}
    assert document["projection"]["total_gpu_hours"] == 200.0


def test_the_bundled_configs_have_the_checkpoints_sizes(tiny_zoo, kit):
    import torch
    import transformers
    from demucs.htdemucs import HTDemucs

    gpu_models, _ = kit
    for name, spec in gpu_models.SPECS.items():
        with torch.device("meta"):  # shapes only: nothing is allocated
            if name == "htdemucs":
                model = HTDemucs(**json.loads((gpu_models.CONFIGS / spec.config_file).read_text()))
            else:
                config = gpu_models.real_config(spec, tiny_zoo[spec.zoo])
                model = getattr(transformers, spec.auto_class).from_config(config)
        assert gpu_models.parameter_count(model) == pytest.approx(CHECKPOINT_PARAMETERS[name], rel=0.01), name
    # token ids come from the tiny tokenizer the folder is saved with, so prompts put media where the model expects
    config = gpu_models.real_config(gpu_models.SPECS["qwen2-audio"], tiny_zoo["qwen2-audio"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_zoo["qwen2-audio"])
    assert config.audio_token_index == tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert config.text_config.vocab_size == 156032 and config.text_config.hidden_size == 4096


@pytest.mark.gpu
def test_real_size_small_stages_on_a_gpu(tmp_path, tiny_zoo):
    output = tmp_path / "gpu_throughput.json"
    argv = [sys.executable, str(KIT / "benchmark.py"), "--size", "real", "--device", "cuda", "--stages",
            "tagging,clap_filter", "--batch-sizes", "1,4", "--output", str(output), "--work-dir", str(tmp_path)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-4000:]
    stages = json.loads(output.read_text())["stages"]
    assert stages["tagging"]["parameters"] == pytest.approx(86.6e6, rel=0.01)
    assert all(stage["toolkit"]["peak_gpu_memory_gib"] > 0 for stage in stages.values())
