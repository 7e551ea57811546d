"""The QA benchmarks in the FusionAudio eval JSON format, and AIR-Bench Foundation's options."""

import json

import datasets
import pytest

from fusion_datasets.builders.air_bench_foundation import answer_letter, parse_options

AUTHORS = "/wangbenyou/xinyuan/ECHO-AQA/data/eval"
PREAMBLE = "Choose the most suitable answer from options to respond the question in next line.\n"


def _row(audio_id, instruction, output, dataset="", task="", **extra):
    return {"audio_id": audio_id, "instruction": instruction, "input": "", "dataset": dataset, "task": task,
            "output": output, **extra}


@pytest.fixture
def benchmark(tmp_path, write_clip):
    """``benchmark(rows, clips)``: the eval JSON in one folder, the clips under an audio root in another."""

    def make(rows, clips):
        data, root = tmp_path / "eval", tmp_path / "audio-root"
        data.mkdir()
        (data / "test.json").write_text(json.dumps(rows, indent=4))
        for clip in clips:
            write_clip(root / clip)
        return data, root

    return make


@pytest.mark.parametrize(("name", "dataset", "task"), [
    ("clotho-aqa", "ClothoAQA", "closed-ended"),
    ("audiocaps-qa", "AudioCaps_QA", "Open-ended question"),
    ("wavcaps-qa", "WavCaps_QA", "Open-ended question"),
])
def test_qa_benchmarks_keep_every_question_and_resolve_the_authors_paths(
    name, dataset, task, tmp_path, benchmark, cli_build, load
):
    rows = [
        _row(f"{AUTHORS}/ClothoAQA/audio_files/river_mouth3.wav", "Are there waves?", "yes", dataset, task),
        _row(f"{AUTHORS}/ClothoAQA/audio_files/river_mouth3.wav", "Are there waves?", "no", dataset, task),
        _row(f"{AUTHORS}/ClothoAQA/audio_files/Creaking pier.wav", "Often, or not?", "nine", dataset, task),
        _row(f"{AUTHORS}/ClothoAQA/audio_files/gone.wav", "Is it raining?", "no", dataset, task),
        _row(f"{AUTHORS}/ClothoAQA/audio_files/river_mouth3.wav", "   ", "yes", dataset, task),
    ]
    data, root = benchmark(rows, ["ClothoAQA/audio_files/river_mouth3.wav", "audio_files/Creaking pier.wav"])
    stats = cli_build(name, data, tmp_path / "built", "--audio-root", str(root))
    ds = load(tmp_path / "built")
    assert ds.column_names == ["id", "clip_id", "audio", "audio_id", "instruction", "question", "answer",
                               "dataset", "task"]
    assert ds["id"] == ["river_mouth3-0", "river_mouth3-1", "Creaking pier-2"]
    assert ds["answer"] == ["yes", "no", "nine"] and ds["clip_id"][2] == "Creaking pier"
    assert ds[0]["audio_id"] == rows[0]["audio_id"] and ds[0]["task"] == task and ds[0]["dataset"] == dataset
    assert ds[2]["audio"].metadata.path == str(root / "audio_files" / "Creaking pier.wav")
    assert stats["skipped"] == {"missing_audio": 1, "empty_field": 1}
    # a row is a question, a skip one JSON object; two questions share a clip
    assert (stats["written_by_unit"], stats["read"]) == ({"questions": 3}, {"JSON objects": 5})


FOUNDATION = [
    _row(f"{AUTHORS}/AIR-Bench/Foundation/Audio_Grounding_AudioGrounding/Yy1saVTXsKwc.flac",
         f"{PREAMBLE}What are the exact times when 'a woman briefly talks' is present in the clip?\n"
         "Options: [[0.44, 2.38], [3.85, 10.02], [3.42, 4.11], [1.51, 7.99]]",
         "[3.42, 4.11]", "AudioGrounding", "Audio_Grounding"),
    _row(f"{AUTHORS}/AIR-Bench/Foundation/Sound_AQA_avqa/58939.flac",
         f"{PREAMBLE}What is shown in the video?\n"
         "Options: [Toilet flush, The toilet is clogged., Sewer flushing, Rain, wind and thunder]",
         "Rain, wind and thunder", "avqa", "Sound_AQA"),
    _row(f"{AUTHORS}/AIR-Bench/Foundation/Music_AQA_music_avqa/00007052.wav",
         f"{PREAMBLE}Is there a xylophone sound? Options: yes, no, four, more than ten",
         "more than ten", "music_avqa", "Music_AQA"),
    _row(f"{AUTHORS}/AIR-Bench/Foundation/Speaker_Number_Verification_VoxCeleb1/id10001.wav",
         f"{PREAMBLE}How many speakers?\nOptions: (A) 1 (B) 2, maybe 3 (C) 4",
         "B", "VoxCeleb1", "Speaker_Number_Verification"),
    _row(f"{AUTHORS}/AIR-Bench/Foundation/Music_AQA_music_avqa/00000001.wav",
         f"{PREAMBLE}Is the pipa louder? Options: yes, no, four, three", "five", "music_avqa", "Music_AQA"),
]


def test_air_bench_foundation_keeps_options_and_the_answer_letter(
    tmp_path, benchmark, cli_build, load, where
):
    clips = ["Audio_Grounding_AudioGrounding/Yy1saVTXsKwc.flac", "Sound_AQA_avqa/58939.flac",
             "Music_AQA_music_avqa/00007052.wav", "Speaker_Number_Verification_VoxCeleb1/id10001.wav",
             "Music_AQA_music_avqa/00000001.wav"]
    data, root = benchmark(FOUNDATION, clips)
    stats = cli_build("air-bench-foundation", data, tmp_path / "built", "--audio-root", str(root))
    ds = load(tmp_path / "built")
    assert ds.features["options"] == datasets.List(datasets.Value("string"))
    assert ds["options"] == [
        ["[0.44, 2.38]", "[3.85, 10.02]", "[3.42, 4.11]", "[1.51, 7.99]"],
        ["Toilet flush", "The toilet is clogged.", "Sewer flushing", "Rain, wind and thunder"],
        ["yes", "no", "four", "more than ten"],
        ["1", "2, maybe 3", "4"],
    ]
    assert ds["answer_letter"] == ["C", "D", "D", "B"]
    assert ds["question"][0].startswith("What are the exact times") and ds["question"][0].endswith("clip?")
    assert ds["question"][2] == "Is there a xylophone sound?"
    assert ds["instruction"][0] == FOUNDATION[0]["instruction"]  # predictions match on it
    assert ds["clip_id"][0] == "y1saVTXsKwc"  # an AudioSet clip: the leakage guard's id
    assert where(stats) == [("answer_not_in_options", "eval/test.json:34")]


@pytest.mark.parametrize(("instruction", "answer", "options", "letter"), [
    ("Q?\nOptions: [[0.0, 10.0], [0.38, 7.81]]", "[0.38, 7.81]", ["[0.0, 10.0]", "[0.38, 7.81]"], "B"),
    ("Q? Options: midi_pitch_77, midi_pitch_106", "midi_pitch_106", ["midi_pitch_77", "midi_pitch_106"], "B"),
    ("Q?\nOptions: [a man's voice (loud), dog, cat]", "dog, cat", ["a man's voice (loud)", "dog, cat"], "B"),
    ("Q? Options: (A) red, green (B) blue", "(A) red, green", ["red, green", "blue"], "A"),
    ("Q? Options: [yes, no]", "Maybe", ["yes", "no"], None),
    ("No options here", "yes", [], None),
])
def test_options_are_parsed_and_the_answer_named(instruction, answer, options, letter):
    assert parse_options(instruction, answer)[1] == options
    assert answer_letter(options, answer) == letter


def test_air_bench_chat_keeps_meta_info(tmp_path, benchmark, cli_build, load):
    meta = "['A steady hum and deep tone of a heavy machine.', 'The engine made a continuous noise.']"
    rows = [_row(f"{AUTHORS}/AIR-Bench/Chat/sound_QA_clotho/validation_1037.wav",
                 "Is the machine noise steady or fluctuating?", "Steady.", "clotho", "Open-ended question",
                 meta_info=meta),
            _row(f"{AUTHORS}/AIR-Bench/Chat/music_QA/1.wav", "What genre?", "Jazz.", "musiccaps",
                 "Open-ended question", meta_info={"caption": "A jazz trio."})]
    data, root = benchmark(rows, ["sound_QA_clotho/validation_1037.wav", "music_QA/1.wav"])
    cli_build("air-bench-chat", data, tmp_path / "built", "--audio-root", str(root))
    ds = load(tmp_path / "built")
    assert ds["meta_info"] == [meta, '{"caption": "A jazz trio."}']
    assert ds["question"][0] == "Is the machine noise steady or fluctuating?" and ds["answer"][0] == "Steady."
    assert ds["clip_id"] == ["validation_1037", "1"]


# AIR-Bench's own layout: Foundation/Foundation_meta.json (a JSON list, as AIR-Bench's Inference_Foundation.py
# reads it) beside one folder per <task_name>_<dataset_name>; Audio_Grounding's files are .flac though the
# meta file names them .wav. Two-option tasks have no choice_c, choice_d.
FOUNDATION_META = [
    {"path": "Yy1saVTXsKwc.wav", "question": "What are the exact times when 'a woman briefly talks' is present "
     "in the clip?", "choice_a": "[0.44, 2.38]", "choice_b": "[3.85, 10.02]", "choice_c": "[3.42, 4.11]",
     "choice_d": "[1.51, 7.99]", "answer_gt": "[3.42, 4.11]", "task_name": "Audio_Grounding",
     "dataset_name": "AudioGrounding", "uniq_id": 0},
    {"path": "58939.wav", "question": "What is shown in the video?", "choice_a": "Toilet flush",
     "choice_b": "The toilet is clogged.", "choice_c": "Sewer flushing", "choice_d": "Rain, wind and thunder",
     "answer_gt": "Rain, wind and thunder", "task_name": "Sound_AQA", "dataset_name": "avqa", "uniq_id": 1},
    {"path": "id10001/1zcIwhmdeo4/00001.wav", "question": "Are the two speakers the same person?",
     "choice_a": "yes", "choice_b": "no", "answer_gt": "no", "task_name": "Speaker_Verification",
     "dataset_name": "VoxCeleb1", "uniq_id": 2},
    {"path": "00000001.wav", "question": "Is the pipa louder?", "choice_a": "yes", "choice_b": "no",
     "choice_c": "four", "choice_d": "three", "answer_gt": "five", "task_name": "Music_AQA",
     "dataset_name": "music_avqa", "uniq_id": 3},
    {"path": "gone.wav", "question": "Which genre?", "choice_a": "rock", "choice_b": "jazz", "answer_gt": "rock",
     "task_name": "Music_Genre_Recognition", "dataset_name": "GTZAN", "uniq_id": 4},
]


def test_air_bench_foundation_reads_airbench_own_meta_file(tmp_path, write_clip, cli_build, load, where):
    data = tmp_path / "AIR-Bench" / "Foundation"
    data.mkdir(parents=True)
    (data / "Foundation_meta.json").write_text(json.dumps(FOUNDATION_META, indent=4))
    for clip in ["Audio_Grounding_AudioGrounding/Yy1saVTXsKwc.flac", "Sound_AQA_avqa/58939.wav",
                 "Speaker_Verification_VoxCeleb1/id10001/1zcIwhmdeo4/00001.wav", "Music_AQA_music_avqa/00000001.wav"]:
        write_clip(data / clip)
    stats = cli_build("air-bench-foundation", data, tmp_path / "built")
    ds = load(tmp_path / "built")
    # 5 rows: one answer not among its options, one clip not on disk
    assert ds["options"] == [["[0.44, 2.38]", "[3.85, 10.02]", "[3.42, 4.11]", "[1.51, 7.99]"],
                             ["Toilet flush", "The toilet is clogged.", "Sewer flushing", "Rain, wind and thunder"],
                             ["yes", "no"]]
    assert ds["answer_letter"] == ["C", "D", "B"] and ds["answer"] == ["[3.42, 4.11]", "Rain, wind and thunder", "no"]
    assert ds["audio_id"] == ["Audio_Grounding_AudioGrounding/Yy1saVTXsKwc.flac", "Sound_AQA_avqa/58939.wav",
                              "Speaker_Verification_VoxCeleb1/id10001/1zcIwhmdeo4/00001.wav"]
    assert ds[0]["audio"].metadata.path == str(data / "Audio_Grounding_AudioGrounding" / "Yy1saVTXsKwc.flac")
    assert ds["task"] == ["Audio_Grounding", "Sound_AQA", "Speaker_Verification"] and ds["dataset"][2] == "VoxCeleb1"
    assert ds["question"][1] == "What is shown in the video?" and ds["clip_id"][0] == "y1saVTXsKwc"
    # the instruction AIR-Bench's Inference_Foundation.py sends, options as lettered lines
    assert ds["instruction"][2] == ("Choose the most suitable answer from options A, B, C, and D to respond the "
                                    "question in next line, you may only choose A or B or C or D.\n"
                                    "Are the two speakers the same person?\nA. yes\nB. no")
    assert stats["skipped"] == {"answer_not_in_options": 1, "missing_audio": 1}
    assert where(stats) == [("answer_not_in_options", "AIR-Bench/Foundation/Foundation_meta.json:36")]


CHAT_META = [  # AIR-Bench's Chat_meta.json: meta_info is a string (a transcript's JSON, or captions)
    {"meta_info": '[{"speaker": "speaker 1", "speaking time": "(0.00,13.39)", "transcription": "so it\'s a lot '
     'more than the like two thousand dollar computers"}]',
     "question": "What does the first speaker imply about the national debt?",
     "answer_gt": "That it's more than six trillion dollars.", "path": "568.38_596.46.wav",
     "task_name": "speech_dialogue_QA", "dataset_name": "fisher", "uniq_id": 0},
    {"meta_info": "['A steady hum and deep tone of a heavy machine.', 'The engine made a continuous noise.']",
     "question": "Is the machine noise steady or fluctuating?", "answer_gt": "Steady.",
     "path": "validation_1037.wav", "task_name": "sound_QA", "dataset_name": "clotho", "uniq_id": 1},
]


def test_air_bench_chat_reads_airbench_own_meta_file(tmp_path, write_clip, cli_build, load):
    data = tmp_path / "AIR-Bench" / "Chat"
    data.mkdir(parents=True)
    (data / "Chat_meta.json").write_text(json.dumps(CHAT_META, indent=4))
    write_clip(data / "speech_dialogue_QA_fisher" / "568.38_596.46.wav")
    write_clip(data / "sound_QA_clotho" / "validation_1037.wav")
    stats = cli_build("air-bench-chat", data, tmp_path / "built")
    ds = load(tmp_path / "built")
    assert stats["written"] == 2 and ds["meta_info"] == [row["meta_info"] for row in CHAT_META]
    assert ds["instruction"] == ds["question"] == [row["question"] for row in CHAT_META]
    assert ds["answer"] == ["That it's more than six trillion dollars.", "Steady."]
    assert ds["audio_id"] == ["speech_dialogue_QA_fisher/568.38_596.46.wav", "sound_QA_clotho/validation_1037.wav"]
    assert ds["task"] == ["speech_dialogue_QA", "sound_QA"] and ds["dataset"] == ["fisher", "clotho"]
