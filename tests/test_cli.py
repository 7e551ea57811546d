import argparse
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from transformers import AutoModelForAudioClassification

from fusion_datasets.cli import build_parser, main
from fusion_datasets.demo import write_sample_clips
from fusion_datasets.pipeline.config import InputConfig
from fusion_datasets.pipeline.inputs import load_input


def test_tiny_zoo_command_writes_loadable_models(tmp_path, capsys):
    assert main(["tiny-zoo", str(tmp_path), "--only", "ast-audioset", "htdemucs"]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert sorted(listed) == ["ast-audioset", "htdemucs"]
    model = AutoModelForAudioClassification.from_pretrained(listed["ast-audioset"])
    assert model.config.num_labels == 527
    assert (tmp_path / "htdemucs" / "htdemucs.yaml").exists()


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "fusion-datasets"
    completed = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert completed.stdout.startswith("fusion-datasets ")


def test_unknown_tiny_model_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["tiny-zoo", str(tmp_path), "--only", "gpt-5"])
    assert exit_.value.code == 2
    assert "invalid choice: 'gpt-5'" in capsys.readouterr().err


def _parsers(parser):
    """``parser`` and every parser under it (each command, eval's tasks, each builder), each complete."""
    parser.format_help()  # adds the arguments a parser describes only when asked (build's builders)
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_of_every_command_says_what_it_does_and_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: a default is never wrapped
    for parser in _parsers(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{parser.prog} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.nargs != 0 and action.default not in (None, [], argparse.SUPPRESS):
                assert f"(default: {action.default})" in text, f"{parser.prog} {action.option_strings[0]}"
        for nothing in ("default: None", "default: False", "default: []", "==SUPPRESS=="):
            assert nothing not in text, f"{parser.prog}: {nothing}"


def test_the_help_says_what_the_tool_does_and_where_to_start(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0 and "parses arguments" not in text
    assert "Build fine-grained audio caption datasets from your own audio and video" in text
    for command in ("run", "build", "eval", "train-clap", "review", "demo"):
        assert f" {command} " in text
    assert "fusion-datasets demo --tiny-models" in text and "--limit 10" in text


@pytest.mark.slow
def test_limit_caps_the_clips_a_run_takes_from_its_input(tmp_path, tiny_zoo, capsys):
    clips, output = tmp_path / "clips", tmp_path / "2024"  # a folder named as YAML reads a number
    assert len(write_sample_clips(clips)) == 4
    first_two = load_input(InputConfig(path=str(clips)))["id"][:2]

    assert main(["run", "tiny", "--input", str(clips), "--output", str(output), "--dry-run", "--limit", "2"]) == 0
    assert f"2 clips from {clips}" in capsys.readouterr().out and not output.exists()

    assert main(["run", "tiny", "--input", str(clips), "--output", str(output), "--limit", "2"]) == 0
    assert "the output holds 2 clips" in capsys.readouterr().out
    cues = datasets.load_dataset(str(output), "cues", split="train")
    assert sorted(cues["id"]) == sorted(first_two)
    assert json.loads((output / "stats.json").read_text())["clips"] == 2


@pytest.mark.parametrize("limit", ["0", "-1", "two"])
def test_a_limit_is_a_number_of_clips(limit, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "tiny", "--input", str(tmp_path), "--dry-run", "--limit", limit])
    assert exit_.value.code == 2
    assert f"--limit: expected a number of clips, 1 or more, got {limit!r}" in capsys.readouterr().err
