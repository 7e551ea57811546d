"""CLAP fine-tuning on a synthetic, learnable task: tones of distinct pitches and captions naming them.

The training data comes in two forms the command reads: a ``save_to_disk`` folder with a ``captions``
list per clip, and a run output folder (Hub layout, config ``captions``) with a ``caption`` string and
embedded audio bytes. The retrieval benchmark is a Hub-layout folder with a ``test`` split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fusion_datasets.clap.embed import load_clap
from fusion_datasets.cli import main
from fusion_datasets.config import ConfigError
from fusion_datasets.eval.retrieval_eval import evaluate_retrieval
from fusion_datasets.hub.push import HubError
from fusion_datasets.testing import media
from fusion_datasets.testing.hub import LocalHub, http_error
from fusion_datasets.train import load_train_config, train_clap
from fusion_datasets.train.card import model_card, push_model
from fusion_datasets.train.checkpoints import TrainingState
from fusion_datasets.train.data import load_table, parse_dataset_spec
from fusion_datasets.train.loss import clap_contrastive_loss

PITCHES = {200: "deep rumble", 400: "low hum", 800: "mid beep", 1600: "high whistle"}
TEMPLATES = ("a {name} at {hz} hertz", "the {name} of a {hz} hertz tone", "a recording of a {name}")
RATE = 16000  # written at 16 kHz: the training data is resampled to the model's 48 kHz


def _tone(hz: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.5 * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi)) + 0.02 * rng.standard_normal(len(t))
    return wave[None, :].astype(np.float32)


def _captions(hz: int) -> list[str]:
    return [template.format(name=PITCHES[hz], hz=hz) for template in TEMPLATES]


def _write_hub_folder(folder: Path, table: datasets.Dataset, config: str, split: str) -> Path:
    table.to_parquet(str(folder / "data" / config / f"{split}-00000.parquet"))
    (folder / "README.md").write_text(
        f"---\nconfigs:\n- config_name: {config}\n  data_files:\n  - split: {split}\n"
        f"    path: data/{config}/*.parquet\n---\n"
    )
    return folder


def _tone_rows(folder: Path, per_pitch: int, rng: np.random.Generator) -> dict[str, list]:
    """``per_pitch`` tones of 1 to 2 s for each pitch written to ``folder``: ``{id, audio, captions}`` columns."""
    rows: dict[str, list] = {"id": [], "audio": [], "captions": []}
    for hz in PITCHES:
        for index in range(per_pitch):
            path = media.write_audio(folder / f"{hz}-{index}.wav", _tone(hz, rng.uniform(1, 2), rng), RATE)
            rows["id"].append(path.stem)
            rows["audio"].append(str(path))
            rows["captions"].append(_captions(hz))
    return rows


@pytest.fixture(scope="module")
def tone_data(tmp_path_factory) -> dict[str, str]:
    """``saved`` (save_to_disk, captions lists, 3 clips per pitch), ``many`` (the same, 24 per pitch),
    ``run`` (run output, caption strings, embedded bytes), ``bench`` (retrieval benchmark: one clip per
    pitch with 3 captions) and ``bad`` (``saved`` plus a corrupt file)."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    rows = _tone_rows(root / "clips", 3, rng)
    datasets.Dataset.from_dict(rows).save_to_disk(str(root / "saved"))
    datasets.Dataset.from_dict(_tone_rows(root / "many", 24, rng)).save_to_disk(str(root / "many"))
    _write_hub_folder(root / "bench", datasets.Dataset.from_dict(_tone_rows(root / "bench", 1, rng)), "default", "test")

    run = {"id": [], "audio": [], "caption": []}
    for hz in PITCHES:
        path = media.write_audio(root / "clips" / f"{hz}-run.wav", _tone(hz, 1.5, rng), RATE)
        run["id"].append(path.stem)
        run["audio"].append({"bytes": path.read_bytes(), "path": path.name})
        run["caption"].append(_captions(hz)[0])
    features = datasets.Features(
        {"id": datasets.Value("string"), "audio": datasets.Audio(), "caption": datasets.Value("string")}
    )
    _write_hub_folder(root / "run", datasets.Dataset.from_dict(run, features=features), "captions", "train")

    (root / "clips" / "corrupt.wav").write_bytes(b"not a wav file" * 100)
    bad = {key: [*values] for key, values in rows.items()}
    bad["id"].append("corrupt")
    bad["audio"].append(str(root / "clips" / "corrupt.wav"))
    bad["captions"].append(["a broken file"])
    datasets.Dataset.from_dict(bad).save_to_disk(str(root / "bad"))
    return {name: str(root / name) for name in ("saved", "run", "bench", "bad", "many")}


def _config(tiny_zoo, tone_data, output, *overrides: str, train=("saved",), model=None, **fields):
    base = [
        f"{key}={value}"
        for key, value in {
            "learning_rate": 1e-3,
            "batch_size": 4,
            "per_device_batch_size": 2,
            "epochs": 2,
            "warmup_ratio": 0.1,
            "weight_decay": 0.0,
            "num_workers": 0,
            "eval_resamples": 0,
            "save_every_steps": 1000,
        }.items()
    ]
    return load_train_config(
        "pretrain",
        [*base, *overrides],
        model=model or str(tiny_zoo["clap"]),
        train=[tone_data[name] for name in train],
        eval=tone_data["bench"],
        output=str(output),
        **fields,
    )


def _bench_r1(model: str, tone_data) -> dict[str, float]:
    table = load_table(tone_data["bench"], "test")
    metrics = evaluate_retrieval(load_clap(model, device="cpu"), table, n_resamples=0)["metrics"]
    return {key: metrics[key] for key in ("t2a_R@1", "a2t_R@1")}


def test_training_raises_retrieval_well_above_chance_and_the_untrained_model(tmp_path, tiny_zoo, tone_data):
    """On ``clap-trainable``, the tiny CLAP without dropout and with a wider init: the plain one's collapsed
    text embeddings keep the loss at ln(batch) for a random number of steps. Batches of 8 hold every pitch
    as a negative; its 96 steps reach R@1 100 by epoch 6 with seeds 0, 1 and 2."""
    output = tmp_path / "out"
    model = str(tiny_zoo["clap-trainable"])
    config = _config(
        tiny_zoo,
        tone_data,
        output,
        "epochs=8",
        "batch_size=8",
        "per_device_batch_size=8",
        "num_workers=1",
        train=("many", "run"),
        model=model,
    )
    result = train_clap(config)

    chance = 100 / len(PITCHES)
    untrained = _bench_r1(model, tone_data)
    trained = _bench_r1(str(output / "best"), tone_data)
    assert untrained["t2a_R@1"] <= 2 * chance  # the random model is near chance
    for key in ("t2a_R@1", "a2t_R@1"):
        assert trained[key] >= 75 and trained[key] >= untrained[key] + 40, (key, untrained, trained)

    results = json.loads((output / "eval_results.json").read_text())
    assert [entry["epoch"] for entry in results["evaluations"]] == list(range(9))
    assert results["evaluations"][0]["metrics"]["t2a_R@1"] == pytest.approx(untrained["t2a_R@1"])
    assert results["selection"] == "t2a_R@1 + a2t_R@1" and results["best"]["epoch"] == result.best["epoch"]
    best = next(entry for entry in results["evaluations"] if entry["epoch"] == result.best["epoch"])
    assert {key: best["metrics"][key] for key in trained} == pytest.approx(trained)  # best/ is that epoch
    assert result.steps == 8 * ((96 + 4) // 8) and result.epochs_completed == 8 and result.skipped_clips == 0

    report = json.loads((output / "report.json").read_text())
    rows = {(row["task"], row["metric"]): row for row in report["results"]}
    assert rows[("t2a", "R@1")]["value"] == pytest.approx(trained["t2a_R@1"]) and rows[("t2a", "R@1")]["n"] == 12
    assert ("overall", "R@1") in rows and (output / "report.md").exists()
    log = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == result.steps and log[0]["logits_shape"] == [8, 8] and log[0]["micro_batches"] == 1
    assert log[-1]["lr"] < log[len(log) // 2]["lr"]  # cosine decay


def test_loss_is_symmetric_infonce_over_the_models_logits(tiny_zoo):
    """Both directions, with the model's two logit scales. (``ClapModel(return_loss=True)`` takes the
    text-to-audio direction twice: it transposes ``logits_per_audio`` before its cross-entropy.)"""
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(str(tiny_zoo["clap"])).eval()
    processor = ClapProcessor.from_pretrained(str(tiny_zoo["clap"]))
    rng = np.random.default_rng(1)
    clips = [_tone(hz, 1.0, rng)[0] for hz in PITCHES]
    inputs = processor(
        text=[_captions(hz)[0] for hz in PITCHES],
        audio=clips,
        sampling_rate=48000,
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        output = model(**inputs, return_loss=True)
        loss, logits = clap_contrastive_loss(
            output.audio_embeds, output.text_embeds, model.logit_scale_a.exp(), model.logit_scale_t.exp()
        )
    labels = torch.arange(len(PITCHES))
    both_ways = (F.cross_entropy(output.logits_per_text, labels) + F.cross_entropy(output.logits_per_audio, labels)) / 2
    assert float(loss) == pytest.approx(float(both_ways), rel=1e-5)
    assert torch.allclose(logits, output.logits_per_text, atol=1e-5)


def test_a_resumed_run_continues_from_its_checkpoint(tmp_path, tiny_zoo, tone_data):
    straight = train_clap(_config(tiny_zoo, tone_data, tmp_path / "straight"))
    output = tmp_path / "resumed"
    first = train_clap(_config(tiny_zoo, tone_data, output, "save_every_steps=2", "max_steps=4"))
    assert first.steps == 4 and first.resumed_from_step is None
    checkpoint = output / "checkpoints" / "step-00000004"
    saved_optimizer = torch.load(checkpoint / "optimizer.bin", weights_only=False)
    assert {int(state["step"]) for state in saved_optimizer["state"].values()} == {4}

    second = train_clap(_config(tiny_zoo, tone_data, output, "save_every_steps=2"))
    assert second.resumed_from_step == 4
    assert second.steps == straight.steps == 6 and second.epochs_completed == 2
    final = torch.load(output / "checkpoints" / "step-00000006" / "optimizer.bin", weights_only=False)
    assert {int(state["step"]) for state in final["state"].values()} == {6}  # 4 loaded + 2 more
    reference = torch.load(
        tmp_path / "straight" / "checkpoints" / "step-00000006" / "optimizer.bin", weights_only=False
    )
    for index, state in reference["state"].items():  # the same batches, in the same order
        assert torch.allclose(final["state"][index]["exp_avg_sq"], state["exp_avg_sq"], rtol=1e-3, atol=1e-9)
    log = [json.loads(line)["step"] for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]
    assert sorted(path.name for path in (output / "checkpoints").iterdir()) == [
        "step-00000004",
        "step-00000006",
    ]

    again = train_clap(_config(tiny_zoo, tone_data, output, "save_every_steps=2"))  # a finished run: no more steps
    assert (again.resumed_from_step, again.steps, again.best) == (6, 6, second.best)
    assert len((output / "train_log.jsonl").read_text().splitlines()) == 6


def test_a_checkpoint_holds_the_loop_state_and_a_rerun_takes_up_its_epoch_midway(tmp_path, tiny_zoo, tone_data):
    """12 clips in micro-batches of 2, two per step: 3 steps per epoch. Stopped at step 2, the checkpoint
    is 4 micro-batches into epoch 0; the rerun trains the 2 left, then epoch 1 (not epoch 0 again)."""
    output = tmp_path / "midway"
    train_clap(_config(tiny_zoo, tone_data, output, "save_every_steps=1", "max_steps=2"))
    saved = TrainingState.from_json((output / "checkpoints" / "step-00000002" / "training_state.json").read_text())
    assert saved == TrainingState(step=2, epoch=0, batches_done=4, clips=8, skipped=[])

    result = train_clap(_config(tiny_zoo, tone_data, output, "save_every_steps=1"))
    assert (result.resumed_from_step, result.steps, result.epochs_completed) == (2, 6, 2)
    log = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert [(entry["step"], entry["epoch"]) for entry in log] == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1)]
    assert json.loads((output / "train_stats.json").read_text())["clips_trained"] == 2 * 12


def test_the_loop_state_reads_and_writes_checkpoints_of_before_the_dataclass():
    """``training_state.json`` was a plain dict dumped with indent 2: the same keys, the same text."""
    skipped = [{"dataset": "data/bad", "row": 12, "id": "corrupt", "message": "cannot decode audio"}]
    legacy = json.dumps({"step": 4, "epoch": 1, "batches_done": 2, "clips": 40, "skipped": skipped}, indent=2) + "\n"
    state = TrainingState.from_json(legacy)
    assert state == TrainingState(step=4, epoch=1, batches_done=2, clips=40, skipped=skipped)
    assert state.to_json() == legacy


def test_two_processes_compute_the_loss_over_the_gathered_batch(tmp_path, tiny_zoo, tone_data):
    """Two CPU processes through torchrun (with ``ACCELERATE_USE_CPU=1``, or accelerate ignores the
    processes on a machine without GPUs): ``accelerate launch --cpu --num_processes 2`` starts only one
    process on this machine (its multi-CPU launch needs mpirun), torchrun starts two over gloo."""
    output = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "fusion_datasets.cli",
        "train-clap",
        "--model",
        str(tiny_zoo["clap"]),
        "--train",
        tone_data["saved"],
        "--eval",
        tone_data["bench"],
        "--output",
        str(output),
        *[
            arg
            for item in (
                "batch_size=8",
                "per_device_batch_size=2",
                "epochs=1",
                "num_workers=0",
                "eval_resamples=0",
                "learning_rate=1e-4",  # YAML 1.1 reads it as a string: the config takes it
            )
            for arg in ("--set", item)
        ],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}  # accelerate: gloo on CPUs
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    log = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    # 2 per process x 2 processes x 2 accumulation = 8: 3 micro-batches per process (the last one alone);
    # each micro-batch's logits span both processes' rows, 4 x 4, not the per-process 2 x 2
    assert [(entry["logits_shape"], entry["micro_batches"]) for entry in log] == [([4, 4], 2), ([4, 4], 1)]
    stats = json.loads((output / "train_stats.json").read_text())
    assert (stats["processes"], stats["gradient_accumulation_steps"], stats["clips_trained"]) == (2, 2, 12)
    assert (output / "best" / "model.safetensors").exists()
    assert json.loads((output / "train_config.json").read_text())["learning_rate"] == 1e-4


def test_an_undecodable_clip_is_skipped_and_counted(tmp_path, tiny_zoo, tone_data):
    output = tmp_path / "bad"
    result = train_clap(
        _config(
            tiny_zoo,
            tone_data,
            output,
            "epochs=1",
            "per_device_batch_size=13",
            "batch_size=13",
            train=("bad",),
        )
    )
    stats = json.loads((output / "train_stats.json").read_text())
    assert result.skipped_clips == stats["dropped_undecodable"] == 1 and result.steps == 1
    assert stats["clips_trained"] == 12
    (bad,) = stats["undecodable"]
    assert bad["id"] == "corrupt" and bad["row"] == 12 and "cannot decode audio" in bad["message"]


def test_config_presets_and_batch_layout():
    config = load_train_config(train=["runs/out"], eval="bench")
    assert (config.learning_rate, config.batch_size, config.epochs) == (5e-5, 196, 15)
    finetune = load_train_config("finetune", ["per_device_batch_size=49"], train=["a"], eval="b")
    assert (finetune.learning_rate, finetune.epochs) == (1e-5, 20)
    assert finetune.batch_layout(2) == (49, 2) and finetune.batch_layout(4) == (49, 1)
    with pytest.raises(ConfigError, match="batch_size 196 is not"):
        finetune.batch_layout(3)
    with pytest.raises(ConfigError, match="learning_rat"):
        load_train_config("pretrain", ["learning_rate=fast"], train=["a"], eval="b")
    with pytest.raises(ConfigError, match="train: give at least one"):
        load_train_config(eval="b")
    assert parse_dataset_spec("out/run:captions") == ("out/run", "captions")
    assert parse_dataset_spec("org/name") == ("org/name", None)


def _evaluation() -> dict:
    """An ``eval_results.json`` entry: epoch 3, T2A and A2T R@1 44.3 on 5 clips with 25 captions."""
    figures = {"R@1": 44.3, "R@5": 70.0, "R@10": 80.0, "mAP@10": 55.0, "mean_rank": 9.0, "median_rank": 2.0}
    metrics = {f"{task}_{metric}": value for task in ("t2a", "a2t") for metric, value in figures.items()}
    return {"epoch": 3, "step": 30, "metrics": metrics, "n_audios": 5, "n_captions": 25}


def test_model_card_holds_the_eval_results_and_the_push_uploads_best(tmp_path):
    """The Hub is replaced by LocalHub, a test double that writes the repository to a local folder."""
    import huggingface_hub

    config = load_train_config(
        "finetune",
        ["eval_split=test"],
        model="laion/clap-htsat-unfused",
        train=["org/fusion-captions", str(tmp_path)],
        eval="org/audiocaps-test",
        output=str(tmp_path),
        push_to_hub="me/clap-ft",
    )
    evaluation = _evaluation()
    card = model_card("me/clap-ft", config, "audiocaps-test", evaluation)
    data = huggingface_hub.ModelCard(card).data
    assert data.base_model == "laion/clap-htsat-unfused" and data.datasets == ["org/fusion-captions"]
    values = {(result.task_type, result.metric_type): result.metric_value for result in data.eval_results}
    assert values[("text-to-audio-retrieval", "r@1")] == 44.3 and len(values) == 8
    assert "model-index" in card and "| audiocaps-test | t2a | R@1 | 44.30 | 25 |" in card

    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "config.json").write_text("{}")
    hub = LocalHub(tmp_path / "remote")
    hub.failures = [http_error(503, "Service Unavailable")]  # retried
    assert push_model(tmp_path, config, "audiocaps-test", evaluation, api=hub) == "https://huggingface.co/me/clap-ft"
    assert sorted(path.name for path in (tmp_path / "remote").iterdir()) == ["README.md", "config.json"]
    assert hub.calls[0] == (
        "create_repo",
        {"repo_id": "me/clap-ft", "private": False, "repo_type": "model", "exist_ok": True},
    )
    assert [call["repo_type"] for call in hub.commits()] == ["model", "model"]


def test_a_refused_model_push_names_the_repository_and_not_the_token(tmp_path, monkeypatch):
    token = "hf_FAKEtoken0123456789abcdefXYZ"
    monkeypatch.setenv("HF_TOKEN", token)
    config = load_train_config(train=["d"], eval="e", output=str(tmp_path), push_to_hub="me/clap-ft")
    (tmp_path / "best").mkdir()
    hub = LocalHub(tmp_path / "remote")
    hub.failures = [http_error(403, f"token {token} may not write to me/clap-ft")]
    with pytest.raises(HubError, match=r"Hub model me/clap-ft \(HTTP 403\)") as raised:
        push_model(tmp_path, config, "bench", _evaluation(), api=hub)
    assert token not in str(raised.value) and raised.value.__cause__ is None


def test_cli_trains_from_a_run_output(tmp_path, tiny_zoo, tone_data, capsys):
    output = tmp_path / "cli"
    argv = [
        "train-clap",
        "--model",
        str(tiny_zoo["clap"]),
        "--train",
        f"{tone_data['run']}:captions",
        "--eval",
        tone_data["bench"],
        "--output",
        str(output),
        "--preset",
        "finetune",
    ]
    for item in ("batch_size=4", "epochs=1", "num_workers=0", "eval_resamples=0"):
        argv += ["--set", item]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(output / "report.md")
    assert json.loads((output / "train_config.json").read_text())["learning_rate"] == 1e-5


def test_one_command_fine_tunes_on_the_captions_of_a_real_run(tmp_path, tiny_zoo, tone_data):
    """``run tiny`` on tones, then ``train-clap --train OUT``: the run's ``captions`` config is read by default."""
    clips, out, model = tmp_path / "clips", tmp_path / "run", tmp_path / "clap"
    for hz in PITCHES:
        media.write_audio(clips / f"{hz}.wav", _tone(hz, 2.0, np.random.default_rng(hz)), RATE)
    run = ["run", "tiny", "--input", str(clips), "--output", str(out), "--set", "experts.separation.enabled=false"]
    assert main(run) == 0
    captions = datasets.load_dataset(str(out), "captions", split="train")
    assert captions.num_rows == len(PITCHES)

    train = ["train-clap", "--model", str(tiny_zoo["clap"]), "--train", str(out), "--eval", tone_data["bench"]]
    overrides = ("batch_size=2", "epochs=1", "num_workers=0", "eval_resamples=0")
    assert main([*train, "--output", str(model), *(f"--set={item}" for item in overrides)]) == 0
    stats = json.loads((model / "train_stats.json").read_text())
    assert (stats["clips_trained"], stats["steps"], stats["dropped_undecodable"]) == (len(PITCHES), 2, 0)
    results = json.loads((model / "eval_results.json").read_text())
    assert [entry["epoch"] for entry in results["evaluations"]] == [0, 1] and results["best"]["epoch"] == 1
    assert (model / "best" / "model.safetensors").is_file() and "t2a" in (model / "report.md").read_text()
