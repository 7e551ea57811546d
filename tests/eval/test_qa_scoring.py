"""Closed-ended and multiple-choice scoring on hand-made predictions with known answers."""

import json

import evaluate
import pytest
import yaml

from fusion_datasets.cli import main
from fusion_datasets.eval.answers import choose_option, closed_correct, normalize_answer, question_type
from fusion_datasets.evaluate_modules import module_path

OPTIONS = ["[0.44, 2.38]", "[3.85, 10.02]", "rock, pop", "hip hop"]
MC = (
    "Choose the most suitable answer from options A, B, C, and D to respond the question in next line, "
    "you may only choose A or B or C or D.\n"
)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Dog barks!", "dog barks"),
        ("Twenty-one birds.", "21 birds"),
        ("an owl, two cats", "owl 2 cats"),
    ],
)
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    ("prediction", "reference", "correct"),
    [
        ("Yes, it is.", "yes", True),
        ("Yeah", "Yes", True),
        ("nope.", "no", True),
        ("No", "yes", False),
        ("It is yes", "yes", False),
        ("Two", "2", True),
        ("2", "two", True),
        ("twenty-one", "21", True),
        ("The dog", "dog", True),
        ("dogs", "dog", False),
        ("", "dog", False),
        (None, "yes", False),
        ("Nine.", ["eleven", "nine", "eleven"], True),  # any of a question's answers
        ("No", ["yes", "yes", "yes"], False),
        ("no", ["yes", "no", "yes"], True),
    ],
)
def test_closed_ended_match(prediction, reference, correct):
    assert closed_correct(prediction, reference) is correct


def test_question_types():
    assert [question_type(answer) for answer in ("Yes", "no.", "two", "no idea")] == [
        "yes/no",
        "yes/no",
        "single-word",
        "single-word",
    ]


@pytest.mark.parametrize(
    ("prediction", "index"),
    [
        ("[3.85,10.02]", 1),  # the exact option text, its commas spaced differently
        ("rock, pop", 2),
        ("C", 2),
        ("(B)", 1),
        ("b.", 1),
        ("The answer is D.", 3),
        ("Answer: (C) rock, pop", 2),
        ("I think it is hip-hop.", 3),  # the one option it names
        ("rockk, pop", 2),  # the most similar option
        ("A dog barks.", None),  # an article, not the letter A
        ("jazz", None),
        ("E", None),
        ("", None),
        (None, None),
        ("[0.44, 2.38] and [3.85, 10.02]", None),  # names two options
    ],
)
def test_choose_option(prediction, index):
    assert choose_option(prediction, OPTIONS) == index


def test_clotho_aqa_end_to_end(make_benchmark, fa_row, write_jsonl, tmp_path, report_rows):
    rows = [
        fa_row("music", "Is music playing?", "yes"),
        fa_row("noise", "Is a dog barking?", "no"),
        fa_row("speech", "Is someone speaking?", "yes"),
        fa_row("speech", "How many people speak?", "two"),
        fa_row("silence", "What is heard?", "nothing"),
        fa_row("music", "What instrument plays?", "piano"),
        fa_row("noise", "What is the sound?", "rain"),
    ]
    benchmark = make_benchmark("clotho-aqa", rows)
    answers = ["Yes, loudly.", "Yes", "yeah", "2", "Silence."]
    predictions = [
        {"id": str(i), "audio_id": row["audio_id"], "instruction": row["instruction"], "prediction": answer}
        for i, (row, answer) in enumerate(zip(rows, answers))
    ]
    predictions += [
        {
            "id": "6",
            "audio_id": rows[6]["audio_id"],
            "instruction": rows[6]["instruction"],
            "prediction": None,
            "error": "decode: cannot decode audio",
        },
        '{"id": "7", "audio_id": ',  # a line cut short
        {"id": "8", "prediction": "yes"},  # no audio_id
        {"id": "9", "audio_id": "clips/other.wav", "instruction": "Is it loud?", "prediction": "yes"},
    ]
    file = write_jsonl(tmp_path / "preds.jsonl", predictions)
    output = tmp_path / "report"
    assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(benchmark), "--output", str(output),
                 "--model", "my-model"]) == 0

    results = report_rows(output)
    assert results["yes/no", "accuracy"] == (pytest.approx(200 / 3), 3)
    assert results["single-word", "accuracy"] == (25.0, 4)
    assert results["overall", "accuracy"] == (pytest.approx(300 / 7), 7)
    assert results["single-word", "missing"] == (2, 4) and results["overall", "missing"] == (2, 7)
    markdown = (output / "report.md").read_text()
    assert (
        "| model | clotho-aqa yes/no (accuracy) | clotho-aqa single-word (accuracy) "
        "| clotho-aqa overall (accuracy) |"
    ) in markdown
    assert "| `my-model` | 66.67 | 25.00 | 42.86 |" in markdown
    details = json.loads((output / "details.json").read_text())
    assert details["kind"] == "closed" and details["unused_predictions"] == 1 and details["judge"] is None
    assert details["skipped_predictions"] == {"bad_prediction_line": 2}
    items = [json.loads(line) for line in (output / "items.jsonl").read_text().splitlines()]
    assert [item["correct"] for item in items] == [True, False, True, True, False, False, False]


def test_air_bench_foundation_end_to_end(make_benchmark, fa_row, tmp_path, report_rows):
    genre = MC + "What genre is this?\nOptions: rock, pop, hip hop, jazz, blues"
    spans = "When does the dog bark? Options: [[0.44, 2.38], [3.85, 10.02], [5.0, 6.0], [7.1, 9.9]]"
    rows = [
        fa_row("music", MC + spans, "[3.85, 10.02]", "Sound_Grounding"),
        fa_row("music", genre, "hip hop, jazz", "Music_Genre"),
        fa_row("noise", genre, "rock", "Music_Genre"),
        fa_row("speech", genre, "blues", "Music_Genre"),
        fa_row("noise", MC + spans, "[0.44, 2.38]", "Sound_Grounding"),
        fa_row("speech", MC + spans, "[5.0, 6.0]", "Sound_Grounding"),
        fa_row("silence", genre, "pop", "Music_Genre"),
    ]
    benchmark = make_benchmark("air-bench-foundation", rows)
    # the FusionAudio format: the benchmark's JSON with each output replaced by the model's answer
    answers = [
        "[3.85,10.02]",
        "C",
        "(B) pop",
        "I would say it's blues music.",
        "A dog barks.",
        "The answer is C",
    ]
    file = tmp_path / "answers.json"
    file.write_text(
        json.dumps(
            [{**row, "output": answer} for row, answer in zip(rows, answers)] + [{**rows[6], "output": None}],
            indent=1,
        )
    )
    output, index = tmp_path / "report", tmp_path / "card" / "model-index.yaml"
    assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(benchmark), "--output", str(output),
                 "--model-index", str(index)]) == 0

    results = report_rows(output)
    # per task_name + "_" + dataset_name, as score_foundation.py groups them, and per task (one dataset each)
    for task in ("Sound_Grounding_test", "Sound_Grounding"):
        assert results[task, "accuracy"] == (pytest.approx(200 / 3), 3)
    assert results["Music_Genre_test", "accuracy"] == results["Music_Genre", "accuracy"] == (50.0, 4)
    assert results["overall", "accuracy"] == (pytest.approx(400 / 7), 7)
    assert results["Sound_Grounding_test", "unmappable"] == (1, 3) and results["overall", "unmappable"] == (1, 7)
    assert results["overall", "missing"] == (1, 7)
    assert json.loads((output / "details.json").read_text())["skipped_predictions"] == {"bad_json_row": 1}
    items = [json.loads(line) for line in (output / "items.jsonl").read_text().splitlines()]
    # options split at commas unless the answer spans pieces: "hip hop, jazz" is one option in row 1 only
    assert [item["chosen"] for item in items] == ["B", "C", "B", "E", None, "C", None]

    entry = yaml.safe_load(index.read_text())["model-index"][0]
    assert entry["name"] == "answers"  # the predictions file's name
    result = entry["results"][0]
    assert (
        result["task"]["type"] == "audio-text-to-text" and result["dataset"]["name"] == "air-bench-foundation"
    )
    metrics = {metric["name"]: metric["value"] for metric in result["metrics"]}
    assert metrics["accuracy (overall)"] == pytest.approx(57.1429)
    assert not any(name.startswith(("unmappable", "missing")) for name in metrics)


def test_a_benchmark_of_unknown_kind_needs_one(make_benchmark, fa_row, write_jsonl, tmp_path, report_rows, capsys):
    benchmark = make_benchmark("clotho-aqa", [fa_row("music", "Is music playing?", "yes")])
    (benchmark / "stats.json").unlink()  # no builder name: the folder's name, which is no known benchmark
    renamed = benchmark.rename(tmp_path / "my-qa")
    file = write_jsonl(tmp_path / "p.jsonl", [
        {"audio_id": "clips/music.wav", "instruction": "Is music playing?", "prediction": "Yes."}])
    assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(renamed), "--output",
                 str(tmp_path / "r")]) == 2  # a user error: one line, no traceback
    assert "'my-qa' is unknown: give kind" in capsys.readouterr().err
    assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(renamed), "--output",
                 str(tmp_path / "r"), "--kind", "closed"]) == 0
    assert report_rows(tmp_path / "r")["overall", "accuracy"] == (100.0, 1)


def test_evaluate_module():
    metric = evaluate.load(module_path("audio_qa"))
    assert metric.compute(predictions=["Yes.", "two", "a cat"], references=["yes", "2", "dog"]) == {
        "accuracy": pytest.approx(200 / 3)
    }
    # a question with several answers (Clotho-AQA's annotators): any of them is right
    assert metric.compute(predictions=["nine", "no"], references=[["eleven", "nine"], ["yes", "yes"]]) == {
        "accuracy": 50.0
    }
    result = metric.compute(
        predictions=["B", "jazz"], references=["[3.85, 10.02]", "D"], options=[OPTIONS] * 2
    )
    assert result == {"accuracy": 50.0, "unmappable": 1}
