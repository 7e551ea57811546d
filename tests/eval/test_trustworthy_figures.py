"""Figures a reader cannot misread: predictions made once per question and resumed only with the same settings,
partial benchmarks labelled, every setting and the model's name in the report, nothing scorable refused."""

from __future__ import annotations

import json

import pytest

from fusion_datasets.cli import main
from fusion_datasets.eval.predict import run_predict, settings_file


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_question_of_several_annotators_is_asked_once(make_benchmark, fa_row, tiny_zoo, tmp_path, report_rows):
    """Clotho-AQA gives each question three rows (one per annotator): one prediction answers all three."""
    rows = [fa_row("music", "Is music playing?", answer) for answer in ("yes", "yes", "no")]
    rows += [fa_row("noise", "Is it raining?", answer) for answer in ("no", "yes", "yes")]
    benchmark = make_benchmark("clotho-aqa", rows)
    output = tmp_path / "preds.jsonl"
    counts = run_predict(str(tiny_zoo["qwen2-audio"]), benchmark, output, max_new_tokens=4)
    assert counts == {"answered": 2, "failed": 0, "skipped": 0}
    lines = _lines(output)
    assert [(line["audio_id"], line["instruction"]) for line in lines] == [
        ("clips/music.wav", "Is music playing?"), ("clips/noise.wav", "Is it raining?")]
    assert main(["eval", "qa", "--predictions", str(output), "--benchmark", str(benchmark), "--output",
                 str(tmp_path / "report")]) == 0
    assert report_rows(tmp_path / "report")["overall", "accuracy"][1] == 2  # two questions scored


def test_predictions_resume_only_with_the_same_settings(make_benchmark, fa_row, tiny_zoo, tmp_path, capsys):
    benchmark = make_benchmark("clotho-aqa", [fa_row("music", "Is music playing?", "yes"),
                                              fa_row("speech", "Is someone speaking?", "yes")])
    output, model = tmp_path / "preds.jsonl", str(tiny_zoo["qwen2-audio"])
    command = ["eval", "predict", "--model", model, "--benchmark", str(benchmark), "--output", str(output),
               "--max-new-tokens", "4"]
    assert main(command) == 0
    recorded = json.loads(settings_file(output).read_text())
    assert (recorded["model"], recorded["max_new_tokens"], recorded["benchmark"]) == (model, 4, "clotho-aqa")
    before = output.read_text()
    assert main(command) == 0 and output.read_text() == before  # the same settings: nothing to redo

    assert main([*command[:-1], "8"]) == 2  # other settings are refused, the file is left as it was
    assert "max_new_tokens 4 -> 8" in capsys.readouterr().err and output.read_text() == before

    # the report names the model eval predict recorded, or --model-name
    report = tmp_path / "report"
    assert main(["eval", "qa", "--predictions", str(output), "--benchmark", str(benchmark), "--output",
                 str(report)]) == 0
    written = json.loads((report / "report.json").read_text())
    assert written["model"] == model and written["settings"]["predict"]["max_new_tokens"] == 4
    assert main(["eval", "qa", "--predictions", str(output), "--benchmark", str(benchmark), "--output",
                 str(report), "--model-name", "tiny qwen2-audio"]) == 0
    assert json.loads((report / "report.json").read_text())["model"] == "tiny qwen2-audio"


def test_a_partial_benchmark_is_labelled_so(tmp_path, fa_row, write_jsonl, eval_clips):
    """A benchmark built from 3 of the 4 clips its metadata names: the report says 3 of 4, in bold, and
    labels its columns partial."""
    from fusion_datasets.builders import build

    data = tmp_path / "data"
    (data / "clips").mkdir(parents=True)
    for clip in ("music", "noise", "speech"):
        (data / "clips" / f"{clip}.wav").write_bytes(open(eval_clips[clip], "rb").read())
    rows = [fa_row(clip, "Is it loud?", "no") for clip in ("music", "noise", "speech", "silence")]
    (data / "clotho-aqa.json").write_text(json.dumps(rows))
    build("clotho-aqa", data, tmp_path / "bench")
    predictions = write_jsonl(tmp_path / "preds.jsonl", [
        {"id": str(index), "audio_id": row["audio_id"], "instruction": row["instruction"], "prediction": "no"}
        for index, row in enumerate(rows)])
    assert main(["eval", "qa", "--predictions", str(predictions), "--benchmark", str(tmp_path / "bench"),
                 "--output", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["benchmarks"] == {"clotho-aqa": {"scored": 3, "size": 4, "partial": True}}
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "**Partial benchmark** clotho-aqa: 3 clips scored, of its 4" in markdown
    assert "| clotho-aqa (partial) yes/no (accuracy) |" in markdown


@pytest.mark.parametrize("command", ["qa", "classification"])
def test_no_evaluation_exits_0_with_nothing_scorable(command, make_benchmark, fa_row, write_jsonl, tiny_zoo,
                                                     tmp_path, capsys):
    name = {"qa": "clotho-aqa", "classification": "esc50"}[command]
    files = {"ESC50.csv": "1,dog\n"} if command == "classification" else {}
    benchmark = make_benchmark(name, [fa_row("music", "What is it?", "dog")], files=files)
    predictions = write_jsonl(tmp_path / "preds.jsonl", [
        {"id": "0", "audio_id": "clips/elsewhere.wav", "instruction": "What is it?", "prediction": "dog"}])
    extra = ["--text-encoder", str(tiny_zoo["clap"])] if command == "classification" else []
    assert main(["eval", command, "--predictions", str(predictions), "--benchmark", str(benchmark), "--output",
                 str(tmp_path / "report"), *extra]) == 2
    assert capsys.readouterr().err.strip() and not (tmp_path / "report" / "report.json").exists()
