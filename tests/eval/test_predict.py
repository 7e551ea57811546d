"""``eval predict`` with the tiny Qwen2-Audio on a tiny benchmark: batched, resumable, failures recorded."""

import json

import pytest

from fusion_datasets.cli import main
from fusion_datasets.eval.predict import read_predictions, run_predict
from fusion_datasets.testing.server import FaultProxy, Faults, serve_model


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_resume_then_score(make_benchmark, fa_row, tiny_zoo, tmp_path, report_rows):
    rows = [
        fa_row("music", "Is music playing?", "yes"),
        fa_row("speech", "Is someone speaking?", "yes"),
        fa_row("corrupt", "Is it loud?", "no"),
        fa_row("noise", "What is the sound?", "rain"),
        fa_row("silence", "Is it quiet?", "yes"),
    ]
    benchmark = make_benchmark("clotho-aqa", rows)
    output = tmp_path / "preds.jsonl"
    command = [
        "eval",
        "predict",
        "--model",
        str(tiny_zoo["qwen2-audio"]),
        "--benchmark",
        str(benchmark),
        "--output",
        str(output),
        "--batch-size",
        "2",
        "--max-new-tokens",
        "4",
    ]
    assert main(command) == 0

    first = _lines(output)
    assert [line["instruction"] for line in first] == [row["instruction"] for row in rows]
    assert [line["audio_id"] for line in first] == [row["audio_id"] for row in rows]
    failed = [line for line in first if "error" in line]
    assert [line["audio_id"] for line in failed] == ["clips/corrupt.wav"] and failed[0]["prediction"] is None
    assert failed[0]["error"].startswith("decode: cannot decode audio")
    assert all(isinstance(line["prediction"], str) for line in first if "error" not in line)

    # one clip alone gives what it gave in a batch of two (left padding)
    alone = run_predict(
        str(tiny_zoo["qwen2-audio"]), benchmark, tmp_path / "alone.jsonl", batch_size=1, max_new_tokens=4
    )
    assert alone == {"answered": 4, "failed": 1, "skipped": 0}
    assert _lines(tmp_path / "alone.jsonl") == first

    # a rerun skips the answered rows and tries the failed one again; a line cut off is answered again
    kept = output.read_text().splitlines()
    output.write_text("\n".join(kept[:3] + kept[4:]) + "\n" + kept[3][:25])
    counts = run_predict(str(tiny_zoo["qwen2-audio"]), benchmark, output, batch_size=2, max_new_tokens=4)
    assert counts == {"answered": 1, "failed": 1, "skipped": 3}
    again = _lines(output)
    assert sorted(line["id"] for line in again) == sorted(line["id"] for line in first)
    assert sorted(again, key=lambda line: line["id"]) == sorted(first, key=lambda line: line["id"])

    predictions, skipped = read_predictions(output)
    assert len(predictions) == 5 and not skipped
    assert [p.text is None for p in predictions].count(True) == 1

    # the predictions score end to end: the failed row counts as missing
    assert main(["eval", "qa", "--predictions", str(output), "--benchmark", str(benchmark), "--output",
                 str(tmp_path / "report"), "--model", "tiny-qwen2-audio"]) == 0
    results = report_rows(tmp_path / "report")
    assert results["overall", "missing"] == (1, 5) and results["overall", "accuracy"][1] == 5
    assert json.loads((tmp_path / "report" / "report.json").read_text())["model"] == "tiny-qwen2-audio"


def test_rows_without_an_instruction_are_asked_to_describe(make_benchmark, fa_row, tiny_zoo, tmp_path):
    benchmark = make_benchmark("esc50", [fa_row("music", "Classify.", "dog")], files={"ESC50.csv": "1,dog\n"})
    counts = run_predict(
        str(tiny_zoo["qwen2-audio"]), benchmark, tmp_path / "captions.jsonl", max_new_tokens=3
    )
    assert counts == {"answered": 1, "failed": 0, "skipped": 0}
    (line,) = _lines(tmp_path / "captions.jsonl")
    assert line["instruction"] is None and line["audio_id"] == "clips/music.wav"
    assert isinstance(line["prediction"], str)


def test_served_predictions_equal_in_process_ones_and_a_rerun_retries_the_failures(
        make_benchmark, fa_row, tiny_zoo, tmp_path, report_rows):
    """``--backend server``: the same answers from a real ``transformers serve`` of the tiny model (the
    first request is refused with a 400, which is not retried: its row is recorded and answered on the rerun)."""
    rows = [fa_row("speech", "Is someone speaking?", "yes"), fa_row("corrupt", "Is it loud?", "no"),
            fa_row("silence", "Is it quiet?", "yes")]
    benchmark = make_benchmark("clotho-aqa", rows)
    model = str(tiny_zoo["qwen2-audio"])
    run_predict(model, benchmark, tmp_path / "local.jsonl", max_new_tokens=4)
    output = tmp_path / "served.jsonl"
    with serve_model(model) as server, FaultProxy(server.base_url, Faults(fail_first=1, fail_status=400)) as proxy:
        command = ["eval", "predict", "--model", model, "--backend", "server", "--base-url", proxy.base_url,
                   "--max-concurrency", "2", "--benchmark", str(benchmark), "--output", str(output),
                   "--max-new-tokens", "4"]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HF_TOKEN", "")  # the server takes no token
            assert main(command) == 0
            refused = [line for line in _lines(output) if "HTTP 400" in line.get("error", "")]
            assert len(refused) == 1 and refused[0]["prediction"] is None
            assert main(command) == 0
    served = {line["audio_id"]: line for line in _lines(output)}  # the rerun's line replaced the refused one
    local = {line["audio_id"]: line for line in _lines(tmp_path / "local.jsonl")}
    assert len(_lines(output)) == 3 and served.keys() == local.keys()
    assert all(served[key]["prediction"] == local[key]["prediction"] for key in local)
    assert served["clips/corrupt.wav"]["error"].startswith("decode:")
    assert main(["eval", "qa", "--predictions", str(output), "--benchmark", str(benchmark), "--output",
                 str(tmp_path / "report")]) == 0
    assert report_rows(tmp_path / "report")["overall", "missing"] == (1, 3)
