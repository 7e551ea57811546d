"""The compute plan of ``run --dry-run --clips N``: each stage priced only by figures measured with its own model."""

from __future__ import annotations

import json

from fusion_datasets.cli import main
from fusion_datasets.pipeline.config import load_config
from fusion_datasets.pipeline.dryrun import load_throughput, stage_figure, step_model
from fusion_datasets.pipeline.plan import Plan


def _plan(capsys, *args: str) -> dict[str, str]:
    assert main(["run", *args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    return {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in {
        "separation", "speech", "tagging", "sound", "music", "visual", "fusion", "clap_filter", "qa"}} | {"": out}


def test_the_plan_never_prices_a_stage_with_figures_measured_for_another_model(capsys):
    tiny = load_throughput()  # the tiny zoo's CPU figures, for every stage
    assert set(tiny.clips_per_second) == set(tiny.models)
    for name in ("paper", "small"):
        config = load_config(name)
        for step in Plan.from_config(config).steps:
            figure = stage_figure(step.stage, step_model(step.config), tiny)  # passed as the user's own file
            assert "tiny" not in figure.source and figure.clips_per_second != tiny.clips_per_second[step.stage]
    # the tiny Demucs of the zoo's repo folder is not Demucs' own htdemucs, though both are named htdemucs
    paper, tiny_zoo = (step_model(Plan.from_config(load_config(name)).step("separation").config)
                       for name in ("paper", "tiny"))
    assert paper == "htdemucs" and tiny_zoo == "local:htdemucs/htdemucs"

    plan = _plan(capsys, "paper", "--clips", "1200000", "--gpu", "H100", "--gpus", "4")
    assert "1200000 clips (--clips; the input and the output are not read)" in plan[""]
    assert "unknown" in plan["separation"] and "unknown" in plan["tagging"] and "unknown" in plan["fusion"]
    # Whisper large-v3: the one published figure bundled, labelled, its source cited
    assert "3.06" in plan["speech"] and "108h55m" in plan["speech"]
    assert "published, NVIDIA A100 80GB [1]" in plan["speech"]
    assert "[1] openai/whisper-large-v3: " in plan[""] and "github.com/Vaibhavs10/insanely-fast-whisper" in plan[""]
    assert "108.9 GPU-hours" in plan[""] and "27h13m on 4 GPUs" in plan[""]
    assert "bottleneck of those: speech" in plan[""]
    assert "(served x64)" in plan["qa"] and "no GPU kit file for H100 is bundled" in plan[""]


def test_a_kit_file_prices_the_stages_it_measured_with_the_configs_model_and_served_ones_in_server_time(
        tmp_path, capsys):
    kit = {"measured_on": "a kit run on an H100", "clip_seconds": 10.0,
           "clips_per_second": {"speech": 40.0, "tagging": 500.0, "fusion": 2.0},
           "kit": {"device": "NVIDIA H100 80GB HBM3"},
           "stages": {"speech": {"model": "openai/whisper-large-v3"},  # the config's: used, before the published
                      "tagging": {"model": "MIT/ast-finetuned-audioset-16-16-0.442"},  # another checkpoint: not
                      "fusion": {"model": "Qwen/QwQ-32B"}}}
    path = tmp_path / "gpu_throughput.json"
    path.write_text(json.dumps(kit))
    plan = _plan(capsys, "paper", "--clips", "1200000", "--throughput", str(path), "--gpus", "2")
    assert "40.00" in plan["speech"] and "8h20m" in plan["speech"] and "a kit run on an H100" in plan["speech"]
    assert "unknown" in plan["tagging"] and "500" not in plan["tagging"]
    assert "166h40m srv" in plan["fusion"]  # one server at the configured concurrency: not in the GPU-hours
    assert "8.3 GPU-hours" in plan[""] and "4h10m on 2 GPUs" in plan[""]
    assert "estimates from a kit run on an H100, 10 s clips where it measured the config's model" in plan[""]
