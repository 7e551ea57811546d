"""``fusion-datasets build --help`` and ``build NAME --help``: what each builder expects, read off the builder."""

import re

import pytest

from fusion_datasets.builders import BUILDERS
from fusion_datasets.builders.usage import summary
from fusion_datasets.cli import main


def _help(capsys, monkeypatch, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_build_help_lists_every_builder_with_what_it_builds(capsys, monkeypatch):
    text = " ".join(_help(capsys, monkeypatch, "build").split())
    for name, builder in BUILDERS.items():
        assert f" {name} {summary(builder)}" in text, name  # a long name has its summary on the next line
    assert summary(BUILDERS["esc50"]) == "ESC-50: 2,000 environmental clips in 50 classes (`meta/esc50.csv`, `audio/`)."


@pytest.mark.parametrize(("name", "says", "options", "not_its"), [
    ("esc50", ["`ESC-50-master` folder", "`meta/esc50.csv` and the clips in `audio/`", "Keeps the 5 cross-validation",
               "test: meta/esc50.csv (its header names filename, fold, target, category)", "Writes `vocabulary.csv`"],
     ["--vocabulary FILE", "--encoding CODEC"], ["--clip-list", "--no-leakage-guard", "--no-trimmed"]),
    ("clotho", ["`clotho_captions_evaluation.csv`", "the clips in `evaluation/`",
                "train: clotho_captions_development.csv"],
     ["--clip-list FILE", "--audio-root DIR"], ["--vocabulary", "--exclude"]),
    ("audioset", ["`*segments*.csv` in the data folder", "`<ytid>_<start>_<end>`", "unless `--no-leakage-guard`"],
     ["--no-trimmed", "--no-leakage-guard", "--exclude BENCHMARK_DIR", "--labels FILE"], ["--clip-list"]),
    ("air-bench-foundation", ["its own `Foundation/` folder (`Foundation_meta.json`",
                              "the authors' absolute audio paths resolve under `--audio-root`"],
     ["--data-file FILE"], ["--vocabulary", "--exclude"]),
])
def test_a_builders_help_says_its_layout_files_and_options(name, says, options, not_its, capsys, monkeypatch):
    text = _help(capsys, monkeypatch, "build", name)
    prose = " ".join(text.split())
    assert text.startswith(f"usage: fusion-datasets build {name} [-h] --data-dir DIR --output OUT")
    for words in says:
        assert words in prose
    for option in ["--data-dir DIR", "--output OUT", "--allow-empty", "--set KEY=VALUE", *options]:
        assert re.search(rf"^  {re.escape(option)}\s", text, re.MULTILINE), option  # listed with its help
    for option in not_its:
        assert option not in text


def test_an_option_not_of_this_builder_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["build", "esc50", "--data-dir", str(tmp_path), "--output", str(tmp_path / "out"), "--clip-list", "x"])
    assert exit_.value.code == 2 and "unrecognized arguments: --clip-list x" in capsys.readouterr().err
