"""``eval qa`` under each benchmark's reference protocol, end to end, on fixtures shaped like the files the
references score (FusionAudio's eval JSON, the authors' absolute audio paths) and judged by a stub chat
server whose verdicts each test chooses. Every expected figure is worked out by hand from the reference's
rule, in the comments beside it."""

import json
import logging
import shutil
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

from fusion_datasets.cli import main
from fusion_datasets.testing.stub_chat import StubChatServer

CLOTHO = "/wangbenyou/xinyuan/ECHO-AQA/data/eval/ClothoAQA/audio_files/"
CAPS = "/wangbenyou/xinyuan/ECHO-AQA/data/eval/AudioCapsQA/audio/"
CHAT = "/wangbenyou/xinyuan/ECHO-AQA/data/eval/AIR-Bench/Chat/"  # folders <task_name>_<dataset_name>
# Clotho-AQA questions as its test file gives them: one row per annotator, three per question
QUESTIONS = [
    ("river_mouth3", "Are there waves?", ["yes", "yes", "yes"]),
    ("river_mouth3", "How many times does the water splash?", ["eleven", "nine", "eleven"]),
    ("river_mouth3", "Is the sound falling water?", ["yes", "yes", "no"]),
    ("river_mouth3", "What is flowing?", ["water", "stone", "water"]),
    ("Creaking pier", "Is a dog barking?", ["yes", "no", "yes"]),
    ("Creaking pier", "What type of animal is making the light sound in the background?",
     ["woodpecker", "bird", "bird"]),
    ("Mug in sink", "Is liquid present?", ["yes", "no", "no"]),
    ("Mug in sink", "What is being prepared?", ["food", "coffee", "drink"]),
]


def _clotho_rows(questions=QUESTIONS) -> list[dict]:
    return [{"audio_id": f"{CLOTHO}{clip}.wav", "instruction": question, "input": "", "dataset": "ClothoAQA",
             "task": "closed-ended", "output": answer} for clip, question, answers in questions for answer in answers]


def _item(request: dict) -> dict:
    """The data block of a judge prompt (the first user message: a re-ask keeps it)."""
    text = request["messages"][0]["content"]
    return json.loads(text.split("BEGIN ITEM\n", 1)[1].split("\nEND ITEM", 1)[0])


def _report(folder: Path) -> dict[tuple[str, str], tuple[float, int, str | None]]:
    rows = json.loads((folder / "report.json").read_text())["results"]
    return {(row["task"], row["metric"]): (row["value"], row["n"], row.get("protocol")) for row in rows}


def _stub_judge(server: StubChatServer) -> list[str]:
    return ["--judge-model", "stub-judge", "--judge-kind", "server", "--judge-url", server.base_url]


@pytest.fixture
def benchmark(tmp_path, eval_clips):
    """``benchmark(name, rows, file=None)``: ``rows`` (FusionAudio eval JSON, or a benchmark's own meta file
    named ``file``) built by ``fusion_datasets.builders.build``, each audio file lying at the last folder and
    name of its ``audio_id`` (AIR-Bench's: of ``<task_name>_<dataset_name>/<path>``) under the data folder."""
    from fusion_datasets.builders import build

    def make(name: str, rows: list[dict], file: str | None = None) -> Path:
        data = tmp_path / f"{name}-data"
        for row in rows:
            audio_id = row.get("audio_id") or f"{row['task_name']}_{row['dataset_name']}/{row['path']}"
            target = data.joinpath(*PurePosixPath(audio_id).parts[-2:])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(eval_clips["noise"], target)
        (data / (file or f"{name}.json")).write_text(json.dumps(rows, indent=4))
        build(name, data, tmp_path / name)
        return tmp_path / name

    return make


def _answers_file(path: Path, rows: list[dict], outputs: list) -> Path:
    """Predictions in the FusionAudio format: the benchmark's JSON with each output replaced."""
    path.write_text(json.dumps([{**row, "output": output} for row, output in zip(rows, outputs)], indent=4))
    return path


def test_clotho_aqa_majority_oracle_scores_100(benchmark, tmp_path):
    rows = _clotho_rows()
    data = benchmark("clotho-aqa", rows)
    # the oracle answers each question with its most frequent answer: per annotator row it would match
    # 3+2+2+2+2+2+2+1 = 16 of 24 rows (66.67%); per question it matches one of the answers every time
    majority = [Counter(answers).most_common(1)[0][0] for _, _, answers in QUESTIONS for _ in answers]
    file = _answers_file(tmp_path / "oracle.json", rows, majority)
    assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(data), "--output",
                 str(tmp_path / "r")]) == 0

    results = _report(tmp_path / "r")
    assert results["yes/no", "accuracy"] == (100.0, 4, "clotho-aqa/grouped")
    assert results["single-word", "accuracy"] == (100.0, 4, "clotho-aqa/grouped")
    assert results["overall", "accuracy"] == (100.0, 8, "clotho-aqa/grouped")
    details = json.loads((tmp_path / "r" / "details.json").read_text())
    assert (details["rows"], details["questions"], details["conflicting_predictions"]) == (24, 8, 0)
    items = [json.loads(line) for line in (tmp_path / "r" / "items.jsonl").read_text().splitlines()]
    assert items[1]["answers"] == ["eleven", "nine", "eleven"] and items[1]["prediction"] == "eleven"


def test_clotho_aqa_any_answer_counts_and_the_judge_sees_them_all(benchmark, tmp_path, caplog):
    rows = _clotho_rows()
    data = benchmark("clotho-aqa", rows)
    outputs = [
        *["No."] * 3,  # waves: yes, yes, yes -> wrong
        *["9"] * 3,  # eleven, nine, eleven -> right (a number word is its digits)
        *["No, it is not."] * 3,  # yes, yes, no -> right (one annotator said no)
        *["Stone."] * 3,  # water, stone, water -> right (a minority answer)
        *["Yeah"] * 3,  # yes, no, yes -> right
        "bird", "bird", "A cat.",  # differing predictions: the last is scored, as FusionAudio's scripts -> wrong
        *[None] * 3,  # no answer: missing, wrong
        *["Coffee"] * 3,  # food, coffee, drink -> right
    ]
    file = _answers_file(tmp_path / "answers.json", rows, outputs)
    seen = []

    def judge(request: dict) -> str:
        seen.append(_item(request))
        return "Explanation: The reference answers state it, the model's answer is close.\nRating: 4"

    with StubChatServer(judge) as server, caplog.at_level(logging.WARNING):
        assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(data), "--output",
                     str(tmp_path / "r"), *_stub_judge(server)]) == 0

    results = _report(tmp_path / "r")
    assert results["yes/no", "accuracy"][:2] == (50.0, 4)  # waves wrong, falling water right, dog right, liquid missing
    assert results["single-word", "accuracy"][:2] == (75.0, 4)  # splash, flowing, prepared right; animal wrong
    assert results["overall", "accuracy"][:2] == (62.5, 8)  # 5 of 8
    assert results["overall", "missing"][:2] == (1, 8)
    # the open score: the 7 answered questions rated 4, the missing one 0 -> 28 / 8 = 3.5, x20 = 70;
    # yes/no: (4 + 4 + 4 + 0) / 4 x 20 = 60; single-word: 4 x 20 = 80
    judged = "clotho-aqa/grouped+fusionaudio-judge/last-token"  # the default reading, FusionAudio's
    assert results["overall", "judge_score"] == (70.0, 8, judged)
    assert results["yes/no", "judge_score"] == (60.0, 4, judged)
    assert results["single-word", "judge_score"] == (80.0, 4, judged)
    assert results["overall", "unparsed"] == (0, 8, judged)
    assert {"question": "How many times does the water splash?", "reference answers": ["eleven", "nine", "eleven"],
            "model answer": "9"} in seen
    assert len(seen) == 7
    details = json.loads((tmp_path / "r" / "details.json").read_text())
    assert details["conflicting_predictions"] == 1 and details["skipped_predictions"] == {"bad_json_row": 3}
    assert "1 questions have differing predictions (the first: audio_id" in caplog.text
    assert "the last prediction of each is scored" in caplog.text


# AudioCaps-QA as FusionAudio's eval JSON gives it, and seven verdicts, with how each reading takes them:
# AudioBench's eval_llama3_70b.py, float(last whitespace token), any value, else 0; FusionAudio's LLM_judge.py,
# the same token with its brackets stripped, a number from 0 to 5, else 0; rating-line, the last "Rating: N"
AUDIOCAPS = [
    ("What type of setting or location is likely to be depicted in the audio recording?",
     "A busy airport or a seaport.", "Explanation: same kind of place.\nRating: 4"),  # 4, 4, 4
    ("What is the woman trying to do to the child?", "The child is crying, and the woman seeks to comfort him.",
     "Explanation: it misses the crying.\nRating: 3"),  # 3, 3, 3
    ("What is the sound that is heard after the footstep in the audio recording?", "A toilet flushing.",
     "Explanation: close. I would give it 4 out of 5."),  # 5, 5 (the last token, "5."); no "Rating: N" line
    ("Does the audio recording feature rock music?", "No, it features pop music.",
     "Explanation: partly.\nRating: (2)"),  # float("(2)") fails: 0; 2 once stripped; 2
    ("What is the sound of the vehicle engine in the audio recording?",
     "The sound of the vehicle engine is revving numerous times then running idle.", "**Rating:** 5"),  # 5, 5, 5
    ("What type of object or equipment is likely to produce the sound?",
     "A loose or worn-out bolt or screw on a machine or equipment is likely to produce the sound.",
     "Explanation: exact.\nRating: five"),  # not a number: 0, 0; five
    ("What animal makes the sound?", "A dog barking in the distance.",
     "Explanation: better than the reference.\nRating: 6"),  # 6 (AudioBench keeps any number); 0; out of 0-5
    ("What type of weather-related event is likely being recorded in the audio clip?",
     "A thunderstorm is likely being recorded in the audio clip.", None),  # no prediction
]


@pytest.mark.parametrize(
    ("parse", "protocol", "expected", "failed", "requests"),
    [
        # AudioBench's: 4 + 3 + 5 + 0 + 5 + 0 + 6 + 0 (missing) = 23 over 8 questions, x20; never re-asked
        ("last-token", "audiobench-judge/last-token", (57.5, 8), ("unparsed", 2), 7),
        # FusionAudio's (the default): 4 + 3 + 5 + 2 + 5 + 0 + 0 + 0 (missing) = 19 over 8, x20
        ("fusionaudio", "fusionaudio-judge/last-token", (47.5, 8), ("unparsed", 2), 7),
        # "Rating: N" found in 4, 3, (2), 5, five; "4 out of 5." and the 6 re-asked twice each, then left out:
        # 4 + 3 + 2 + 5 + 5 + 0 (missing) = 19 over 6, x20
        ("rating-line", "audiobench-judge/rating-line", (pytest.approx(380 / 6), 6), ("unjudged", 2), 11),
    ],
)
def test_audiobench_verdicts_read_as_the_reference_reads_them(benchmark, tmp_path, parse, protocol, expected, failed,
                                                              requests):
    rows = [{"audio_id": f"{CAPS}audio_{index}.wav", "instruction": question, "input": "", "dataset": "audiocaps_qa",
             "task": "Open-ended question", "output": answer} for index, (question, answer, _) in enumerate(AUDIOCAPS)]
    data = benchmark("audiocaps-qa", rows)
    lines = [{"id": str(index), "audio_id": row["audio_id"], "instruction": row["instruction"],
              "prediction": f"answer {index}"} for index, row in enumerate(rows[:7])]
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    verdicts = {question: verdict for question, _, verdict in AUDIOCAPS}
    with StubChatServer(lambda request: verdicts[_item(request)["question"]]) as server:
        assert main(["eval", "qa", "--predictions", str(predictions), "--benchmark", str(data), "--output",
                     str(tmp_path / "r"), "--judge-parse", parse, *_stub_judge(server)]) == 0
        assert server.requests == requests

    results = _report(tmp_path / "r")
    assert results["overall", "judge_score"] == (*expected, protocol)
    assert results["overall", failed[0]] == (failed[1], 8, protocol)
    assert results["overall", "missing"] == (1, 8, protocol)
    assert f"`{protocol}`" in (tmp_path / "r" / "report.md").read_text()


# AIR-Bench chat rows as FusionAudio's eval JSON gives them (the category lies in the audio's folder only);
# the stub judge rates the reference 9 and each model answer as MODEL says, and adds 1 (at most 10) to
# whichever answer it reads first: the position bias that judging in both orders cancels. Its verdicts are
# the two numbers alone, the only form cal_score.py reads
CHAT_ROWS = [
    ("sound_QA_clotho/validation_1037.wav", "Is the machine noise steady or fluctuating?", "Steady.", "It is steady."),
    ("sound_QA_clotho/evaluation_352.wav", "What instrument is creating the music in the distance?", "An organ.",
     None),
    ("sound_QA_clotho/validation_373.wav", "Are there any sounds indicative of the vehicle stopping?",
     "There is a screeching sound that could suggest brakes.", "Brakes screech."),
    ("music_generation_analysis_QA_musiccaps/wXmIm6Bq3Tc.wav", "How does the saxophone shape the mood?",
     "It adds a seductive, warm undercurrent.", "It sounds sad."),
    ("music_QA_musiccaps/T7ZSZhcsfjA.wav", "What is the tempo of the music?", "Medium.", "A medium tempo."),
    ("speech_QA_iemocap/Ses01F_impro01_F000.wav", "How does the speaker feel?", "Angry.", "She is angry."),
    ("speech_and_music_QA_musiccaps/1hABzqBHh7w.wav", "What is happening besides the music?",
     "People talk and cheer.", "Nothing."),
    ("speech_and_music_QA_musiccaps/5Jd8cPq1rSk.wav", "Who is singing?", "A woman sings over a choir.",
     "Someone sings."),
    ("speech_and_sound_QA_clotho/development_88.wav", "What is heard besides the man?", "A dog barks twice.",
     "A dog barks."),
]
MODEL = {"It is steady.": 7, "Brakes screech.": 6, "It sounds sad.": 5, "A medium tempo.": 9, "She is angry.": 8,
         "Nothing.": 3, "Someone sings.": 5, "A dog barks.": 7}


def _chat_judge(request: dict) -> str:
    item = _item(request)
    if item["answer 1"] == "Brakes screech.":
        return "I cannot compare these."  # unusable, re-asks included, with the model's answer first
    scores = [MODEL.get(item[key], 9) for key in ("answer 1", "answer 2")]
    return f"{min(scores[0] + 1, 10)} {scores[1]}"


@pytest.mark.parametrize(
    ("orders", "expected", "requests"),
    [
        # reference first, "10 m": the model m, the reference 10; model first, "m+1 9": the model m+1, the
        # reference 9; "Brakes screech." (6) fails in the second order only, which drops that verdict only.
        # cal_score.py per order file, per category: order 1 sound (7+6)/2 = 6.5, music (5+9)/2 = 7, speech 8,
        # speech_and_music (3+5)/2 = 4, speech_and_sound 7; order 2 sound 8, music 8, speech 9,
        # speech_and_music 5, speech_and_sound 8
        ("both", {
            ("sound", "judge_score_1to10"): (7.25, 2),  # (6.5 + 8) / 2; the missing answer skipped
            ("music", "judge_score_1to10"): (7.5, 2),
            ("speech", "judge_score_1to10"): (8.5, 1),
            ("speech_and_music", "judge_score_1to10"): (4.5, 2),
            ("speech_and_sound", "judge_score_1to10"): (7.5, 1),
            ("mixed", "judge_score_1to10"): (6.0, 3),  # (4.5 + 7.5) / 2; pooled over its 3 answers: 5.5
            ("overall", "judge_score_1to10"): (7.3125, 8),  # (8.5 + 7.25 + 7.5 + 6.0) / 4, the leaderboard's
            ("overall", "reference_score"): (9.5, 8),
            # FusionAudio's chat_score.py: the mean over verdicts x10; sound (7 + 6 + 8) / 3
            ("sound", "judge_score"): (70.0, 2),
            ("speech_and_music", "judge_score"): (45.0, 2),  # (3 + 5 + 4 + 6) / 4
            ("overall", "judge_score"): (pytest.approx(1010 / 15), 8),  # 101 over 15 verdicts
            ("sound", "one_order_only"): (1, 3), ("overall", "one_order_only"): (1, 9),
            ("overall", "unjudged"): (0, 9),
            ("sound", "missing"): (1, 3), ("overall", "missing"): (1, 9),
        }, 8 * 2 + 2),  # eight answers in two orders, and two re-asks of the unusable verdict
        ("reference-first", {  # "10 m" only: the model m, the reference 10
            ("sound", "judge_score"): (65.0, 2),  # (7 + 6) / 2 x10
            ("music", "judge_score"): (70.0, 2),  # (5 + 9) / 2 x10
            ("overall", "judge_score"): (62.5, 8),  # (7+6+5+9+8+3+5+7)/8 x10
            ("mixed", "judge_score_1to10"): (5.5, 3),  # ((3 + 5) / 2 + 7) / 2
            ("overall", "judge_score_1to10"): (6.75, 8),  # (8 + 6.5 + 7 + 5.5) / 4
            ("overall", "reference_score"): (10.0, 8),
            ("overall", "unjudged"): (0, 9), ("overall", "missing"): (1, 9),
        }, 8),
    ],
)
def test_air_bench_chat_as_the_reference_scores_it(benchmark, tmp_path, orders, expected, requests):
    meta = "['A steady hum and deep tone of a heavy machine.', 'The engine made a continuous noise as it ran.']"
    rows = [{"audio_id": CHAT + path, "meta_info": meta, "instruction": question, "input": "",
             "dataset": path.split("/")[0].rsplit("_", 1)[1], "task": "Open-ended question", "output": answer}
            for path, question, answer, _ in CHAT_ROWS]
    data = benchmark("air-bench-chat", rows)
    file = _answers_file(tmp_path / "answers.json", rows, [prediction for *_, prediction in CHAT_ROWS])
    with StubChatServer(_chat_judge) as server:
        assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(data), "--output",
                     str(tmp_path / "r"), "--chat-orders", orders, *_stub_judge(server)]) == 0
        assert server.requests == requests

    results = _report(tmp_path / "r")
    protocol = "air-bench-chat/both-orders" if orders == "both" else "air-bench-chat/reference-first"
    assert {key: results[key] for key in expected} == {key: (*value, protocol) for key, value in expected.items()}
    assert {protocol} == {row[2] for row in results.values()}
    assert ("mixed", "judge_score") not in results  # FusionAudio pools answers: no mean of categories
    assert (("sound", "one_order_only") in results) == (orders == "both")


def test_air_bench_chat_categories_from_its_own_meta_file(benchmark, tmp_path):
    rows = [  # Chat_meta.json's fields; the audio at <task_name>_<dataset_name>/<path>
        {"path": "fe_03_00001_0.wav", "question": "What do the speakers plan?", "answer_gt": "A trip.",
         "task_name": "speech_dialogue_QA", "dataset_name": "fisher", "uniq_id": 1, "meta_info": "Two people talk."},
        {"path": "Yb0RFKhbpFJA.wav", "question": "What makes the noise?", "answer_gt": "A train.",
         "task_name": "sound_generation_QA", "dataset_name": "audiocaps", "uniq_id": 2, "meta_info": "A train."},
    ]
    data = benchmark("air-bench-chat", rows, "Chat_meta.json")
    lines = [{"audio_id": f"{row['task_name']}_{row['dataset_name']}/{row['path']}", "instruction": row["question"],
              "prediction": "I think so."} for row in rows]
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with StubChatServer(lambda request: "8 6") as server:  # both orders: the answer (6 + 8) / 2
        assert main(["eval", "qa", "--predictions", str(predictions), "--benchmark", str(data), "--output",
                     str(tmp_path / "r"), *_stub_judge(server)]) == 0
    results = _report(tmp_path / "r")
    assert results["speech", "judge_score_1to10"][:2] == results["sound", "judge_score_1to10"][:2] == (7.0, 1)


@pytest.mark.parametrize(
    "lines",
    [
        [],  # an empty file
        [{"audio_id": f"{CLOTHO}river_mouth3.wav", "instruction": "Are there waves?"}],  # no prediction field
        [{"audio_id": f"{CLOTHO}river_mouth3.wav", "instruction": "Are there waves?", "prediction": 5},
         {"audio_id": f"{CLOTHO}river_mouth3.wav", "instruction": "What is flowing?", "prediction": ["water"]}],
        [{"audio_id": "clips/other.wav", "instruction": "Are there waves?", "prediction": "yes"}],  # another benchmark
        [{"audio_id": f"{CLOTHO}river_mouth3.wav", "instruction": "Are there waves?", "prediction": "  "}],
    ],
)
def test_predictions_that_answer_nothing_are_refused(benchmark, tmp_path, capsys, lines):
    data = benchmark("clotho-aqa", _clotho_rows(QUESTIONS[:4]))
    file = tmp_path / "preds.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(data), "--output",
                 str(tmp_path / "r")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fusion-datasets: error:")]
    assert len(errors) == 1 and "none of the 4 questions of clotho-aqa has an answer to score" in errors[0]
    assert not (tmp_path / "r" / "report.json").exists()


def test_unusable_predictions_are_warned_and_counted(benchmark, tmp_path, caplog):
    data = benchmark("clotho-aqa", _clotho_rows(QUESTIONS[:4]))
    audio = f"{CLOTHO}river_mouth3.wav"
    file = tmp_path / "preds.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in [
        {"audio_id": audio, "instruction": "Are there waves?", "prediction": "Yes."},
        {"audio_id": audio, "instruction": "What is flowing?", "prediction": 5},
        {"audio_id": audio, "instruction": "Is the sound falling water?"},
    ]))
    with caplog.at_level(logging.WARNING):
        assert main(["eval", "qa", "--predictions", str(file), "--benchmark", str(data), "--output",
                     str(tmp_path / "r")]) == 0
    assert "2 predictions hold no answer" in caplog.text
    assert "3 of 4 questions have no answer: counted as missing, and scored wrong" in caplog.text
    assert _report(tmp_path / "r")["overall", "accuracy"][:2] == (25.0, 4)  # 1 of 4
    details = json.loads((tmp_path / "r" / "details.json").read_text())
    assert (details["predictions_without_answer"], details["missing"]) == (2, 3)


@pytest.mark.parametrize("token_env", [None, "FUSION_JUDGE_TOKEN"])
def test_a_served_judge_gets_a_token_only_from_judge_token_env(benchmark, tmp_path, monkeypatch, token_env):
    monkeypatch.setenv("HF_TOKEN", "hf_theHubTokenStaysOnThisMachine")
    monkeypatch.setenv("FUSION_JUDGE_TOKEN", "the-judges-own-key")
    rows = [{"audio_id": f"{CAPS}audio_{index}.wav", "instruction": question, "input": "", "dataset": "audiocaps_qa",
             "task": "Open-ended question", "output": answer} for index, (question, answer, _) in enumerate(AUDIOCAPS)]
    data = benchmark("audiocaps-qa", rows)
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("".join(json.dumps({"id": str(index), "audio_id": row["audio_id"],
                                               "instruction": row["instruction"], "prediction": "an answer"}) + "\n"
                                   for index, row in enumerate(rows)))
    token = ["--judge-token-env", token_env] if token_env else []
    with StubChatServer(lambda request: "Same.\nRating: 4") as server:
        assert main(["eval", "qa", "--predictions", str(predictions), "--benchmark", str(data), "--output",
                     str(tmp_path / "r"), *_stub_judge(server), *token]) == 0
        sent = {headers.get("authorization") for headers in server.headers}
    assert sent == ({"Bearer the-judges-own-key"} if token_env else {None})
