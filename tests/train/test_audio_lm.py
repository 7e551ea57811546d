"""``train-audio-lm`` on the tiny zoo: labels, a learnable toy task, resuming after SIGKILL, bad rows, end to end.

The toy task: 1 s clips of two kinds (music-like tones, noise) asked the same question, answered "a tone" or
"a hiss". A model that ignores the audio can do no better than ln 2 on the first token where the answers differ (the
tokens after it follow from it), so its mean loss over the labelled tokens stays at or above
``ln 2 / labelled`` (the floor).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file

from fusion_datasets.builders import build
from fusion_datasets.cli import main
from fusion_datasets.config import ConfigError
from fusion_datasets.eval.predict import run_predict
from fusion_datasets.experts.audio_lm import FAMILIES
from fusion_datasets.testing import media
from fusion_datasets.train.audio_lm import PRESETS, load_config, train_audio_lm
from fusion_datasets.train.audio_lm.collate import IGNORE_INDEX, AudioLMCollator
from fusion_datasets.train.audio_lm.config import parse_source
from fusion_datasets.train.audio_lm.model import lora_config

QUESTION = "What do you hear?"
ANSWERS = ("a tone", "a hiss")
# the zoo's name and model type of each family
ZOO_FAMILIES = {"qwen2-audio": "qwen2_audio", "audioflamingo3": "audioflamingo3", "musicflamingo": "musicflamingo",
                "qwen2.5-omni": "qwen2_5_omni", "qwen3-omni": "qwen3_omni_moe", "granite-speech": "granite_speech"}
# the toy task's recipe on a tiny random model: its output layer must learn too (see ENV), no dropout
TOY = ["learning_rate=5e-3", "lr_scheduler=constant", "train_lm_head=true", "lora_dropout=0",
       "gradient_accumulation_steps=1", "num_workers=0", "eval_fraction=0", "logging_steps=10", "save_steps=1000"]


def _clip(kind: int, seed: int) -> np.ndarray:
    return (media.music if kind == 0 else media.noise)(1.0, 16000, seed=seed)


def _toy_rows(folder: Path, count: int, first_seed: int, zeroed: bool = False) -> list[dict]:
    """``count`` clips, alternating kinds, written under ``folder/clips``; FusionAudio JSON rows about them."""
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        kind, name = index % 2, f"clips/{first_seed + index}.wav"
        samples = _clip(kind, first_seed + index)
        media.write_audio(folder / name, np.zeros_like(samples) if zeroed else samples, 16000)
        rows.append({"audio_id": name, "instruction": QUESTION, "input": "", "dataset": "toy", "task": "toy",
                     "output": ANSWERS[kind]})
    return rows


def _toy_json(folder: Path, count: int = 24, zeroed: bool = False) -> Path:
    path = folder / "toy.json"
    path.write_text(json.dumps(_toy_rows(folder, count, 0, zeroed)))
    return path


def _floor(model: Path, family: str) -> float:
    """ln 2 / (labelled tokens), on the collator's own labels, for answers labelled alike up to one token."""
    collator = AudioLMCollator(transformers.AutoProcessor.from_pretrained(model), FAMILIES[family], 16000)
    clip = _clip(0, 0)[0]
    labelled = [batch["input_ids"][0][batch["labels"][0] != IGNORE_INDEX].tolist()
                for batch in (collator([{"audio": clip, "prompt": QUESTION, "answer": answer}]) for answer in ANSWERS)]
    assert len(labelled[0]) == len(labelled[1]) and labelled[0] != labelled[1]
    return math.log(2) / len(labelled[0])


def _train(model: Path, data: Path, output: Path, *overrides: str) -> dict:
    return train_audio_lm(load_config(str(model), [*TOY, *overrides], data=[str(data)], output=str(output)))


@pytest.mark.parametrize("name", list(ZOO_FAMILIES))
def test_labels_mask_exactly_the_prompt_the_audio_and_the_padding(tiny_zoo, name):
    processor = transformers.AutoProcessor.from_pretrained(tiny_zoo[name])
    family = FAMILIES[ZOO_FAMILIES[name]]
    rows = [{"audio": _clip(0, 0)[0], "prompt": "Describe the audio in detail.", "answer": "A tone rings out."},
            {"audio": _clip(1, 1)[0][:8000], "prompt": "Is it loud?", "answer": "No."}]
    batch = AudioLMCollator(processor, family, 16000)(rows)
    tokenizer = processor.tokenizer
    audio_ids = set(tokenizer.convert_tokens_to_ids(list(family.audio_tokens)))
    for index, row in enumerate(rows):
        ids, labels = batch["input_ids"][index], batch["labels"][index]
        real = int(batch["attention_mask"][index].sum())
        kept = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        # what is learnt: one stretch from the answer to the end of the turn, nothing after the padding starts
        assert kept == list(range(kept[0], real))
        assert (labels[kept] == ids[kept]).all()
        assert tokenizer.decode(ids[kept]).startswith(row["answer"])
        prompt = tokenizer.decode(ids[: kept[0]])
        assert prompt.rstrip().endswith(("assistant", "<|end_of_role|>")) and row["prompt"] in prompt
        assert audio_ids & set(ids[: kept[0]].tolist()) and not audio_ids & set(ids[kept].tolist())
    # FusionAudio's recipe learns the prompt too, but never the audio placeholders or the padding
    inputs = AudioLMCollator(processor, family, 16000, train_on_inputs=True)(rows)
    is_audio = torch.isin(inputs["input_ids"], torch.tensor(sorted(audio_ids)))
    expected = inputs["input_ids"].masked_fill(is_audio | (inputs["attention_mask"] == 0), IGNORE_INDEX)
    assert torch.equal(inputs["labels"], expected)


def test_presets_adapt_the_language_model_only_by_path(tiny_zoo):
    import peft

    family = FAMILIES["qwen2_audio"]
    model = transformers.AutoModelForMultimodalLM.from_pretrained(tiny_zoo["qwen2-audio"])
    config = load_config(str(tiny_zoo["qwen2-audio"]), data=["d"], output="o")
    adapted = peft.get_peft_model(model, lora_config(config, family))
    lora = {name.rsplit(".lora_A", 1)[0] for name, _ in adapted.named_parameters() if ".lora_A." in name}
    assert lora and all(".language_model.layers." in name for name in lora)
    assert {name.rsplit(".", 1)[1] for name in lora} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"}
    trainable = {name for name, parameter in adapted.named_parameters() if parameter.requires_grad}
    assert any("multi_modal_projector" in name for name in trainable)
    assert not any("audio_tower" in name for name in trainable)

    paper = load_config(str(tiny_zoo["qwen2-audio"]), data=["d"], output="o", preset="fusionaudio")
    assert (paper.lora_r, paper.lora_alpha, paper.learning_rate, paper.epochs, paper.train_on_inputs) == \
        (8, 16, 1e-4, 2, True)
    model = transformers.AutoModelForMultimodalLM.from_pretrained(tiny_zoo["qwen2-audio"])
    adapted = peft.get_peft_model(model, lora_config(paper, family))
    lora = {name.rsplit(".lora_A", 1)[0].rsplit(".", 1)[1] for name, _ in adapted.named_parameters()
            if ".lora_A." in name}
    trainable = {name for name, parameter in adapted.named_parameters() if parameter.requires_grad}
    assert lora == {"q_proj", "v_proj"} and any("audio_tower" in name for name in trainable)

    frozen = load_config(str(tiny_zoo["qwen2-audio"]), ["lora_r=4"], data=["d"], output="o",
                         preset="frozen-projector")
    assert frozen.lora_r == 4 and not frozen.train_projector and set(PRESETS) == {"default", "fusionaudio",
                                                                                   "frozen-projector"}


def test_sources_configs_and_user_errors(tiny_zoo, tmp_path, capsys):
    assert parse_source("runs/out@0.5") == ("runs/out", 0.5) and parse_source("a@b") == ("a@b", 1.0)
    with pytest.raises(ConfigError, match="weight"):
        parse_source("runs/out@-1")
    config = tmp_path / "lm.yaml"
    config.write_text(f"model: {tiny_zoo['granite-speech']}\npreset: fusionaudio\nepochs: 1\n")
    loaded = load_config(str(config), ["seed=3"], data=["x.json"], output="out")
    assert (loaded.preset, loaded.lora_r, loaded.epochs, loaded.seed) == ("fusionaudio", 8, 1.0, 3)
    # the README's recipe file is a valid config
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    config.write_text(next(block.split("```", 1)[0] for block in readme.split("```yaml\n")
                           if block.startswith("# lm.yaml")))
    recipe = load_config(str(config), data=["runs/out"], output="out")
    assert (recipe.model, recipe.train_audio_encoder, recipe.epochs) == ("Qwen/Qwen2-Audio-7B-Instruct", True, 3.0)

    assert main(["train-audio-lm", str(tiny_zoo["granite-speech"]), "--output", str(tmp_path / "o")]) == 2
    assert "data: give at least one training source" in capsys.readouterr().err
    assert main(["train-audio-lm", str(tiny_zoo["granite-speech"]), "--data", str(tmp_path / "nothing"),
                 "--output", str(tmp_path / "o")]) == 2
    assert "not a run output, a Hub dataset in its layout or a FusionAudio JSON" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["granite-speech", "qwen2-audio"])
def test_the_toy_task_is_learnt_from_the_audio(tiny_zoo, tmp_path, name):
    model, family = tiny_zoo[name], ZOO_FAMILIES[name]
    floor = _floor(model, family)
    report = _train(model, _toy_json(tmp_path / "data"), tmp_path / "lm", "max_steps=60")
    assert report["rows"] == {"train": 24, "held_out": 0} and report["steps"] == 60
    assert report["final_loss"] < floor / 3, (report["final_loss"], floor)

    # held-out clips (other seeds), as a benchmark: the adapter answers them, the base model does not
    data = tmp_path / "bench-data"
    (data / "clotho-aqa.json").write_text(json.dumps(_toy_rows(data, 6, 100)))
    benchmark = tmp_path / "bench"
    build("clotho-aqa", data, benchmark)
    correct = {}
    for label, weights in (("base", model), ("trained", tmp_path / "lm")):
        run_predict(str(weights), benchmark, tmp_path / f"{label}.jsonl", max_new_tokens=8)
        lines = [json.loads(line) for line in (tmp_path / f"{label}.jsonl").read_text().splitlines()]
        truth = {row["audio_id"]: row["output"] for row in json.loads((data / "clotho-aqa.json").read_text())}
        correct[label] = sum(line["prediction"] == truth[line["audio_id"]] for line in lines)
    assert correct["trained"] >= 5 and correct["base"] < correct["trained"], correct

    if name == "granite-speech":  # the control: with the audio zeroed, nothing tells the answers apart
        control = _train(model, _toy_json(tmp_path / "zeroed", zeroed=True), tmp_path / "control", "max_steps=60")
        assert control["final_loss"] >= 0.9 * floor, (control["final_loss"], floor)


def _command(model: Path, data: Path, output: Path) -> list[str]:
    options = [*TOY[:-1], "save_steps=3", "max_steps=30", "per_device_batch_size=2"]
    return ["train-audio-lm", str(model), "--data", str(data), "--output", str(output),
            *(part for option in options for part in ("--set", option))]


@pytest.fixture
def one_thread():
    """Every run of a comparison on one CPU thread, as its subprocess: sums over other thread counts differ in ulps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tiny_zoo, tmp_path, one_thread):
    model, data = tiny_zoo["granite-speech"], _toy_json(tmp_path / "data", count=10)
    assert main(_command(model, data, tmp_path / "whole")) == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "fusion_datasets.cli", *_command(model, data, killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    checkpoints = killed / "checkpoints"
    while not (checkpoints / "checkpoint-12" / "trainer_state.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no clean-up runs
    assert process.wait() == -signal.SIGKILL and not (killed / "adapter_model.safetensors").exists()
    # as if killed right after step 12, in the middle of epoch 3 of 6 (5 steps each): later checkpoints gone
    for later in (15, 18):
        shutil.rmtree(checkpoints / f"checkpoint-{later}", ignore_errors=True)

    assert main(_command(model, data, killed)) == 0
    whole, resumed = (load_file(folder / "adapter_model.safetensors") for folder in (tmp_path / "whole", killed))
    assert whole.keys() == resumed.keys() and len(whole) > 0
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6)
    report = json.loads((killed / "train_report.json").read_text())
    assert report["steps"] == 30

    # the same output with other settings is refused, not mixed
    assert main([*_command(model, data, killed), "--set", "learning_rate=1e-3"]) == 2


def test_run_then_train_then_evaluate(tiny_zoo, tmp_path):
    """`run` → `train-audio-lm` (a run output mixed with a FusionAudio JSON holding bad rows) → `eval predict`
    with the adapter, its merged copy and as the sound expert → `eval qa`."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for name, make in (("music", media.music), ("noise", media.noise), ("speech", media.speech)):
        media.write_audio(clips / f"{name}.wav", make(2.0, 16000), 16000)
    output = tmp_path / "out"
    assert main(["run", "tiny", "--input", str(clips), "--output", str(output),
                 "--set", "experts.separation.enabled=false"]) == 0

    release = tmp_path / "release"
    good = _toy_rows(release, 1, 0)[0]
    media.write_audio(release / "clips" / "short.wav", media.noise(0.01, 16000), 16000)  # Granite's processor refuses
    bad = [{**good, "audio_id": "clips/missing.wav"}, {**good, "output": " "}, {**good, "audio_id": "clips/short.wav"},
           {"audio_id": "clips/0.wav", "output": "no instruction"}]
    (release / "fa.json").write_text(json.dumps([good, *bad]))

    rows = [{"audio_id": f"clips/{name}.wav", "instruction": "What is it?", "input": "", "dataset": "test",
             "task": "", "output": name} for name in ("music", "noise", "speech")]
    data = tmp_path / "bench-data"
    (data / "clips").mkdir(parents=True)
    for name in ("music", "noise", "speech"):
        shutil.copy(clips / f"{name}.wav", data / "clips" / f"{name}.wav")
    (data / "clotho-aqa.json").write_text(json.dumps(rows))
    benchmark = tmp_path / "bench"
    build("clotho-aqa", data, benchmark)
    lm = tmp_path / "lm"
    command = ["train-audio-lm", str(tiny_zoo["granite-speech"]), "--data", str(output), "--data",
               f"{release / 'fa.json'}@2", "--output", str(lm), "--merge", "--eval", str(benchmark)]
    for option in ("max_steps=4", "num_workers=0", "eval_fraction=0.3", "gradient_accumulation_steps=1",
                   "max_seconds=1.5"):
        command += ["--set", option]
    assert main(command) == 0
    report = json.loads((lm / "train_report.json").read_text())
    assert report["skipped"] == {"malformed_row": 1, "empty_answer": 1, "undecodable_clip": 2, "refused_clip": 2}
    assert sum(report["rows"].values()) == 3 + 6 + 2  # the run's captions and QA pairs, the good row twice
    assert {problem["problem"].split(":")[0] for problem in report["problems"]} == {"undecodable",
                                                                                    "refused by the processor"}
    assert report["rows"]["held_out"] > 0 and report["eval_loss"] is not None
    assert report["clips_cut"] == 3 and report["max_seconds"] == 1.5  # the run's 2 s clips, cut as experts cut
    card = (lm / "README.md").read_text()
    assert "library_name: peft" in card and "out (local)" in card and "refused_clip: 2" in card
    assert str(tmp_path) not in card  # no path of this machine
    # --eval: the benchmark answered and scored, its figures in the report and the card's model-index
    figures = report["eval"][str(benchmark)]
    assert {row["metric"] for row in figures} >= {"accuracy"} and all(row["n"] == 3 for row in figures)
    assert "model-index:" in card and "## Evaluation" in card
    assert (lm / "eval" / "clotho-aqa" / "report.json").is_file()

    predictions = {}
    for label, model in (("adapter", lm), ("merged", lm / "merged")):
        predictions[label] = tmp_path / f"{label}.jsonl"
        assert main(["eval", "predict", "--model", str(model), "--benchmark", str(benchmark), "--output",
                     str(predictions[label]), "--max-new-tokens", "6"]) == 0
    answers = {label: [json.loads(line)["prediction"] for line in path.read_text().splitlines()]
               for label, path in predictions.items()}
    assert len(answers["adapter"]) == 3 and all(isinstance(answer, str) for answer in answers["adapter"])
    assert answers["merged"] == answers["adapter"]
    assert main(["eval", "qa", "--predictions", str(predictions["adapter"]), "--benchmark", str(benchmark),
                 "--output", str(tmp_path / "report"), "--model", "tiny-granite-lora"]) == 0
    scores = json.loads((tmp_path / "report" / "report.json").read_text())["results"]
    assert any(row["metric"] == "accuracy" and row["n"] == 3 for row in scores)

    # the adapter as the sound expert of a run
    again = tmp_path / "again"
    assert main(["run", "tiny", "--input", str(clips), "--output", str(again), "--set",
                 "experts.separation.enabled=false", "--set", f"experts.sound.model={lm}"]) == 0
    stats = json.loads((again / "stats.json").read_text())
    assert stats["clips_with_errors"] == 0 and stats["stages"]["sound"] == {**stats["stages"]["sound"], "rows": 3,
                                                                          "errors": 0}


def test_a_merged_thinker_is_saved_within_its_whole_model(tiny_zoo, tmp_path):
    """Qwen2.5-Omni trains its thinker; --merge writes the whole model, with the talker's voices file its
    from_pretrained requires, and it answers as the adapter does."""
    from fusion_datasets.experts.audio_lm import load_audio_lm

    lm = tmp_path / "lm"
    _train(tiny_zoo["qwen2.5-omni"], _toy_json(tmp_path / "data", count=4), lm, "max_steps=2", "merge=true")
    assert (lm / "merged" / "spk_dict.pt").is_file()
    base, merged = (load_file(folder / "model.safetensors") for folder in (tiny_zoo["qwen2.5-omni"], lm / "merged"))
    assert base.keys() == merged.keys()
    assert not torch.equal(base["thinker.lm_head.weight"], merged["thinker.lm_head.weight"])  # trained (TOY)
    clip = _clip(0, 0)[0]
    answers = [load_audio_lm(str(folder), "cpu", torch.float32).generate([clip], [QUESTION], 6)
               for folder in (lm, lm / "merged")]
    assert answers[0] == answers[1]
