"""``eval predict`` then ``eval qa`` with each audio-LM family's tiny model: answered, resumed, scored."""

from __future__ import annotations

import json

import pytest

from fusion_datasets.cli import main
from fusion_datasets.eval.predict import run_predict

# qwen2-audio: test_predict.py
FAMILIES = ["audioflamingo3", "musicflamingo", "qwen2.5-omni", "qwen3-omni", "granite-speech"]


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_predicts_resumes_and_scores(name, make_benchmark, fa_row, tiny_zoo, tmp_path, report_rows):
    rows = [fa_row("music", "Is music playing?", "yes"), fa_row("speech", "Is someone speaking?", "yes"),
            fa_row("silence", "Is it quiet?", "yes")]
    benchmark, output, model = make_benchmark("clotho-aqa", rows), tmp_path / "preds.jsonl", str(tiny_zoo[name])
    assert run_predict(model, benchmark, output, batch_size=2, max_new_tokens=3) == {
        "answered": 3, "failed": 0, "skipped": 0}
    first = [json.loads(line) for line in output.read_text().splitlines()]
    assert all(isinstance(line["prediction"], str) for line in first)

    # a run killed mid-line: the rerun keeps the answered rows and answers the cut one again, as before
    lines = output.read_text().splitlines()
    output.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    assert run_predict(model, benchmark, output, batch_size=2, max_new_tokens=3) == {
        "answered": 1, "failed": 0, "skipped": 2}
    assert [json.loads(line) for line in output.read_text().splitlines()] == first

    assert main(["eval", "qa", "--predictions", str(output), "--benchmark", str(benchmark), "--output",
                 str(tmp_path / "report"), "--model", f"tiny-{name}"]) == 0
    results = report_rows(tmp_path / "report")
    assert results["overall", "accuracy"][1] == 3


def test_max_seconds_cuts_each_clip_before_the_model(make_benchmark, fa_row, tiny_zoo, tmp_path, eval_clips):
    import soundfile

    from fusion_datasets.experts.audio_lm import load_audio_lm

    model = str(tiny_zoo["audioflamingo3"])
    benchmark = make_benchmark("clotho-aqa", [fa_row("music", "Is music playing?", "yes")])
    assert main(["eval", "predict", "--model", model, "--benchmark", str(benchmark), "--output",
                 str(tmp_path / "preds.jsonl"), "--max-new-tokens", "4", "--max-seconds", "1"]) == 0
    (line,) = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    music, rate = soundfile.read(eval_clips["music"], dtype="float32")  # 2 s at 16 kHz
    expected = load_audio_lm(model, "cpu", None).generate([music[:rate]], ["Is music playing?"], 4)
    assert line["prediction"] == expected[0]
