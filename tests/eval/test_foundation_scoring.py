"""AIR-Bench Foundation's strict and aligned scoring, on AIR-Bench's own meta file and a stub LLM server."""

import json
import re
import shutil

import pytest

from fusion_datasets.builders import build
from fusion_datasets.cli import main
from fusion_datasets.eval.foundation import airbench_temperatures, reply_letter
from fusion_datasets.testing.stub_chat import StubChatServer


@pytest.mark.parametrize(("reply", "letter"), [
    ("B", "B"), ("B.", "B"), ("C. rock", "C"), ("\nD\n", "D"),
    ("The answer is A.", "A"),  # its second-to-last character
    ("Answer: (B)", "A"),  # the first character again: the reference's reading, followed
    ("As an AI I cannot hear", "A"),  # the first character, as score_foundation.py reads it
    ("E", None), ("none of them", None), ("", None), (None, None),
    ("<think>B or C?</think>C", "C"),  # a reasoning trace is left out
])
def test_reply_letter_reads_as_score_foundation_does(reply, letter):
    assert reply_letter(reply) == letter


# AIR-Bench's Foundation_meta.json: (task, dataset, path, question, choices, answer_gt); Sound_AQA has two
# datasets, which score_foundation.py reports apart (task_id = task_name + "_" + dataset_name)
META = [
    ("Sound_AQA", "avqa", "58939.wav", "What is shown in the video?",
     ["Toilet flush", "The toilet is clogged.", "Sewer flushing", "Rain, wind and thunder"], "Sewer flushing"),
    ("Sound_AQA", "avqa", "61017.wav", "What makes the sound?", ["Toilet flush", "Dog", "Cat", "Rain"],
     "Toilet flush"),
    ("Sound_AQA", "clotho_aqa", "61230.wav", "Where is it?", ["Street", "Forest", "Kitchen", "Beach"], "Forest"),
    ("Sound_AQA", "clotho_aqa", "70411.wav", "What is heard?", ["Bell", "Horn", "Drum", "Siren"], "Siren"),
    ("Music_Genre_Recognition", "GTZAN", "rock.00012.wav", "What is the genre?",
     ["rock", "jazz", "blues", "pop"], "rock"),
    ("Music_Genre_Recognition", "GTZAN", "jazz.00031.wav", "What is the genre?",
     ["rock", "pop", "jazz", "metal"], "jazz"),
    ("Music_Genre_Recognition", "GTZAN", "pop.00002.wav", "What is the genre?",
     ["rock", "pop", "jazz", "metal"], "pop"),
    ("Music_Genre_Recognition", "GTZAN", "metal.00090.wav", "What is the genre?",
     ["rock", "pop", "jazz", "metal"], "metal"),
]
# each question's answer (None: the model gave none) and the stub aligner's reply to it
ANSWERS = [
    ("C", "C"),  # strict: C, right; aligned: C, right
    ("Toilet flush", "A"),  # the option's text: right, right
    ("It sounds like a dog barking far away.", "B"),  # unmappable: wrong; the aligner's pick happens to be right
    ("no idea", "As an AI, I cannot choose."),  # unmappable: wrong; aligned: "A" (its first letter), wrong
    ("jazz", "B"),  # option B: wrong, wrong
    ("I cannot tell", "none of them"),  # unmappable: wrong; the reply holds no letter: left out
    (None, None),  # no answer: wrong (missing); aligned: never sent, left out
    ("D", "The answer is D."),  # right, right
]


@pytest.fixture
def foundation(tmp_path, eval_clips):
    """AIR-Bench's layout: Foundation/Foundation_meta.json beside <task_name>_<dataset_name>/ folders."""
    data = tmp_path / "Foundation"
    rows = []
    for number, (task, dataset, path, question, choices, answer) in enumerate(META):
        (data / f"{task}_{dataset}").mkdir(parents=True, exist_ok=True)
        shutil.copy(eval_clips["noise"], data / f"{task}_{dataset}" / path)
        rows.append({"path": path, "question": question,
                     **{f"choice_{letter}": choice for letter, choice in zip("abcd", choices)},
                     "answer_gt": answer, "task_name": task, "dataset_name": dataset, "uniq_id": number})
    (data / "Foundation_meta.json").write_text(json.dumps(rows, indent=4))
    build("air-bench-foundation", data, tmp_path / "built")
    return tmp_path / "built"


def _predictions(tmp_path, benchmark):
    """eval predict's JSONL: one line per answered question, keyed by the built rows' audio_id and instruction."""
    import datasets

    table = datasets.load_dataset(str(benchmark), split="test")
    lines = [{"id": row_id, "audio_id": audio_id, "instruction": instruction, "prediction": answer}
             for row_id, audio_id, instruction, (answer, _) in
             zip(table["id"], table["audio_id"], table["instruction"], ANSWERS) if answer is not None]
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _aligner(requests: list):
    """The stub LLM: the reply of ANSWERS to the response in the prompt's data block; ``requests`` gets each
    request with the response it aligned."""
    replies = {answer: reply for answer, reply in ANSWERS if answer is not None}

    def answer(request: dict) -> str:
        prompt = request["messages"][-1]["content"]
        item = json.loads(re.search(r"BEGIN ITEM\n(.*)\nEND ITEM", prompt, re.DOTALL)[1])
        requests.append({**request, "response": item["response"]})
        return replies[item["response"]]

    return answer


def _rows(folder) -> dict:
    report = json.loads((folder / "report.json").read_text())
    assert all(row.get("protocol") for row in report["results"])
    return {(row["task"], row["metric"], row.get("protocol")): (row["value"], row["n"]) for row in report["results"]}


def test_strict_and_aligned_scores_and_their_protocols(tmp_path, foundation):
    """Both figures, hand-computed from ANSWERS by each protocol's rule, in one report."""
    requests: list[dict] = []
    with StubChatServer(_aligner(requests)) as server:
        assert main(["eval", "qa", "--predictions", str(_predictions(tmp_path, foundation)), "--benchmark",
                     str(foundation), "--output", str(tmp_path / "report"), "--judge-model", "stub",
                     "--judge-kind", "server", "--judge-url", server.base_url, "--align-seed", "7"]) == 0
    rows = _rows(tmp_path / "report")
    strict, aligned = "air-bench-foundation/strict", "air-bench-foundation/aligned"
    # strict, as score_foundation.py groups it (task_name + "_" + dataset_name): avqa right on 1 and 2 (2/2),
    # clotho_aqa on neither (0/2: 3 and 4 unmappable), GTZAN on 8 (1/4); overall 3/8; every question counts
    assert rows["Sound_AQA_avqa", "accuracy", strict] == (100.0, 2)
    assert rows["Sound_AQA_clotho_aqa", "accuracy", strict] == (0.0, 2)
    assert rows["Music_Genre_Recognition_GTZAN", "accuracy", strict] == (25.0, 4)
    assert rows["overall", "accuracy", strict] == (37.5, 8)
    # the second view, per task over its datasets: Sound_AQA 2 of 4
    assert rows["Sound_AQA", "accuracy", f"{strict}/per-task"] == (50.0, 4)
    assert rows["Music_Genre_Recognition", "accuracy", f"{strict}/per-task"] == (25.0, 4)
    assert rows["overall", "unmappable", strict] == (3, 8)
    assert rows["Sound_AQA_clotho_aqa", "unmappable", strict] == (2, 2)
    # aligned: avqa 1, 2 right (2/2); clotho_aqa 3 right, 4 wrong (1/2); GTZAN 5 wrong, 8 right, 6 (no letter)
    # and 7 (no answer) left out (1/2); Sound_AQA over both datasets 3/4; overall 4/6
    assert rows["Sound_AQA_avqa", "accuracy", aligned] == (100.0, 2)
    assert rows["Sound_AQA_clotho_aqa", "accuracy", aligned] == (50.0, 2)
    assert rows["Music_Genre_Recognition_GTZAN", "accuracy", aligned] == (50.0, 2)
    assert rows["Sound_AQA", "accuracy", f"{aligned}/per-task"] == (75.0, 4)
    assert rows["overall", "accuracy", aligned] == (pytest.approx(400 / 6), 6)
    assert rows["overall", "unaligned", aligned] == (1, 8)
    assert rows["overall", "missing", strict] == (1, 8)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| `preds` | 100.00 | 50.00 | 50.00 | 66.67 | 75.00 | 50.00 |" in markdown  # AIR-Bench's own first
    results, counts = markdown.split("## All results\n", 1)[1].split("## Counts\n")
    assert "unmappable" not in results and "missing" not in results  # no count among the percentages
    assert f"| air-bench-foundation | overall | unmappable | 3 questions | 8 questions | `{strict}` |" in counts
    assert f"| air-bench-foundation | overall | unaligned | 1 question | 8 questions | `{aligned}` |" in counts
    # seven answers sent, none twice (no re-ask), with the seed given, each at the temperature AIR-Bench's
    # align_in_foundation.py draws for it: 1, or 2 for half of them; items.jsonl says which
    items = [json.loads(line) for line in (tmp_path / "report" / "items.jsonl").read_text().splitlines()]
    sent = {request["response"]: request["temperature"] for request in requests}
    assert len(requests) == len(sent) == 7 and {request["seed"] for request in requests} == {7}
    assert sent == {item["prediction"]: item["align_temperature"] for item in items if item["prediction"]}
    assert set(sent.values()) == {1.0, 2.0}
    prompts = [request["messages"][-1]["content"] for request in requests]  # in the order they arrived
    assert all("choose one at random" in prompt for prompt in prompts)
    assert any('"options": {"A": "Toilet flush"' in prompt for prompt in prompts)
    details = json.loads((tmp_path / "report" / "details.json").read_text())
    assert details["judge"]["prompt"] == "align_airbench_foundation_v1" and '"seed": 7' in details["judge"]["params"]
    assert details["align_temperature"] == "air-bench-mix"
    assert [item["aligned_letter"] for item in items] == ["C", "A", "B", "A", "B", None, None, "D"]
    assert items[5]["align_answer"] == "none of them"


def test_without_a_judge_only_the_strict_score(tmp_path, foundation):
    assert main(["eval", "qa", "--predictions", str(_predictions(tmp_path, foundation)), "--benchmark",
                 str(foundation), "--output", str(tmp_path / "report")]) == 0
    rows = _rows(tmp_path / "report")
    strict = "air-bench-foundation/strict"
    assert {protocol for *_, protocol in rows} == {strict, f"{strict}/per-task"}
    assert rows["overall", "accuracy", "air-bench-foundation/strict"] == (37.5, 8)


def test_a_single_align_temperature_is_named_in_the_protocol(tmp_path, foundation):
    """FusionAudio's foundation_alignment.py aligns at temperature 0: not AIR-Bench's sampling, so not its label."""
    requests: list[dict] = []
    with StubChatServer(_aligner(requests)) as server:
        assert main(["eval", "qa", "--predictions", str(_predictions(tmp_path, foundation)), "--benchmark",
                     str(foundation), "--output", str(tmp_path / "report"), "--judge-model", "stub",
                     "--judge-kind", "server", "--judge-url", server.base_url, "--align-temperature", "0"]) == 0
    assert {request["temperature"] for request in requests} == {0.0}
    rows = _rows(tmp_path / "report")
    assert rows["overall", "accuracy", "air-bench-foundation/aligned@t=0"] == (pytest.approx(400 / 6), 6)
    assert not any(protocol == "air-bench-foundation/aligned" for *_, protocol in rows)


def test_airbench_temperatures_are_half_and_half_and_keyed_by_question():
    ids = [f"q{number}" for number in range(2000)]
    temperatures = airbench_temperatures(ids, seed=0)
    assert set(temperatures) == {1.0, 2.0} and 0.45 < temperatures.count(2.0) / len(ids) < 0.55
    assert airbench_temperatures(ids[::-1], seed=0) == temperatures[::-1]  # a question keeps its own
    assert airbench_temperatures(ids, seed=1) != temperatures
