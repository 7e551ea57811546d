"""AIR-Bench Foundation's strict and aligned scoring, on AIR-Bench's own meta file and a stub LLM server."""

import json
import re
import shutil

import pytest

from fusion_datasets.builders import build
from fusion_datasets.cli import main
from fusion_datasets.eval.foundation import reply_letter
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


# AIR-Bench's Foundation_meta.json: (task, dataset, path, question, choices, answer_gt)
META = [
    ("Sound_AQA", "avqa", "58939.wav", "What is shown in the video?",
     ["Toilet flush", "The toilet is clogged.", "Sewer flushing", "Rain, wind and thunder"], "Sewer flushing"),
    ("Sound_AQA", "avqa", "61017.wav", "What makes the sound?", ["Toilet flush", "Dog", "Cat", "Rain"],
     "Toilet flush"),
    ("Sound_AQA", "avqa", "61230.wav", "Where is it?", ["Street", "Forest", "Kitchen", "Beach"], "Forest"),
    ("Sound_AQA", "avqa", "70411.wav", "What is heard?", ["Bell", "Horn", "Drum", "Siren"], "Siren"),
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
    """The stub LLM: the reply of ANSWERS to the response in the prompt's data block."""
    replies = {answer: reply for answer, reply in ANSWERS if answer is not None}

    def answer(request: dict) -> str:
        requests.append(request)
        prompt = request["messages"][-1]["content"]
        item = json.loads(re.search(r"BEGIN ITEM\n(.*)\nEND ITEM", prompt, re.DOTALL)[1])
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
    # strict: every question counts; Sound_AQA right on 1, 2 (2/4); Music on 8 (1/4); overall 3/8
    assert rows["Sound_AQA", "accuracy", strict] == (50.0, 4)
    assert rows["Music_Genre_Recognition", "accuracy", strict] == (25.0, 4)
    assert rows["overall", "accuracy", strict] == (37.5, 8)
    assert rows["overall", "unmappable", strict] == (3, 8) and rows["Sound_AQA", "unmappable", strict] == (2, 4)
    # aligned: Sound_AQA 1, 2, 3 right, 4 wrong (3/4); Music 5 wrong, 8 right, 6 (no letter) and 7 (no
    # answer) left out (1/2); overall 4/6
    assert rows["Sound_AQA", "accuracy", aligned] == (75.0, 4)
    assert rows["Music_Genre_Recognition", "accuracy", aligned] == (50.0, 2)
    assert rows["overall", "accuracy", aligned] == (pytest.approx(400 / 6), 6)
    assert rows["overall", "unaligned", aligned] == (1, 8)
    assert rows["overall", "missing", strict] == (1, 8)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| `preds` | 75.00 | 50.00 | 66.67 |" in markdown  # the paper's table: AIR-Bench's own (aligned)
    results, counts = markdown.split("## All results\n", 1)[1].split("## Counts\n")
    assert "unmappable" not in results and "missing" not in results  # no count among the percentages
    assert f"| air-bench-foundation | overall | unmappable | 3 questions | 8 questions | `{strict}` |" in counts
    assert f"| air-bench-foundation | overall | unaligned | 1 question | 8 questions | `{aligned}` |" in counts
    # seven answers sent, none twice (no re-ask), sampled as AIR-Bench does, with the seed given
    assert len(requests) == 7 and {(request["seed"], request["temperature"]) for request in requests} == {(7, 1.0)}
    prompts = [request["messages"][-1]["content"] for request in requests]  # in the order they arrived
    assert all("choose one at random" in prompt for prompt in prompts)
    assert any('"options": {"A": "Toilet flush"' in prompt for prompt in prompts)
    details = json.loads((tmp_path / "report" / "details.json").read_text())
    assert details["judge"]["prompt"] == "align_airbench_foundation_v1" and '"seed": 7' in details["judge"]["params"]
    items = [json.loads(line) for line in (tmp_path / "report" / "items.jsonl").read_text().splitlines()]
    assert [item["aligned_letter"] for item in items] == ["C", "A", "B", "A", "B", None, None, "D"]
    assert items[5]["align_answer"] == "none of them"


def test_without_a_judge_only_the_strict_score(tmp_path, foundation):
    assert main(["eval", "qa", "--predictions", str(_predictions(tmp_path, foundation)), "--benchmark",
                 str(foundation), "--output", str(tmp_path / "report")]) == 0
    rows = _rows(tmp_path / "report")
    assert {protocol for *_, protocol in rows} == {"air-bench-foundation/strict"}
    assert rows["overall", "accuracy", "air-bench-foundation/strict"] == (37.5, 8)
