"""QA generation end to end (real prompt, in-process backend, validation), the ``qa`` rows, the export.

``qa-lm`` answers :data:`QA_ANSWER` to QA prompts: two pairs about :data:`FUSION_CAPTION`, one about a
violin.
"""

from __future__ import annotations

import json

import datasets
import pytest

from fusion_datasets.chat.backends import TransformersBackendConfig
from fusion_datasets.export.fusionaudio import to_fusionaudio, write_fusionaudio
from fusion_datasets.llm.qa import QAGenerator, explode_qa
from fusion_datasets.llm.step import provenance_feature
from fusion_datasets.testing.zoo.fixed_answer import FUSION_CAPTION, QA_ANSWER

PAIRS = json.loads(QA_ANSWER)["qa_pairs"]
FUSION_ENTRY = {"stage": "fusion", "model": "fusion-model", "revision": None, "prompt": "fusion_v1",
                "prompt_sha256": "0" * 64, "params": "{}", "package_version": None}
VIOLIN_REJECTED = "not grounded in the caption or cues: 'What plays?' 'A violin.'"


def captioned_dataset() -> datasets.Dataset:
    """Fused clips: two about the dog (one with a violin in its music cue), one uncertain, one about rain."""
    tags = [{"label": "Dog", "score": 0.9}]
    rows = [
        {"caption": FUSION_CAPTION, "audio_tags": tags, "music_caption": None},
        {"caption": FUSION_CAPTION, "audio_tags": tags, "music_caption": "A violin melody plays softly."},
        {"caption": None, "caption_uncertain": True, "audio_tags": []},
        {"caption": "Rain falls on a metal roof.", "audio_tags": [{"label": "Rain", "score": 0.8}]},
    ]
    features = datasets.Features({
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "caption": datasets.Value("string"),
        "caption_uncertain": datasets.Value("bool"),
        "audio_tags": datasets.List({"label": datasets.Value("string"), "score": datasets.Value("float32")}),
        "sound_caption": datasets.Value("string"),
        "music_caption": datasets.Value("string"),
        "provenance": provenance_feature(),
    })
    return datasets.Dataset.from_list(
        [{"id": f"clip-{index}", "source": "audioset", "caption_uncertain": False, "sound_caption": None,
          "provenance": [FUSION_ENTRY], **row} for index, row in enumerate(rows)],
        features=features,
    )


def generate_qa(ds: datasets.Dataset, model, **options) -> datasets.Dataset:
    qa = QAGenerator(backend=TransformersBackendConfig(model=str(model), device="cpu"), **options)
    return ds.map(qa, batched=True, batch_size=8, with_rank=True, features=qa.output_features(ds.features),
                  load_from_cache_file=False)


@pytest.fixture(scope="module")
def with_qa(tiny_zoo) -> datasets.Dataset:
    return generate_qa(captioned_dataset(), tiny_zoo["qa-lm"])


def test_qa_pairs_are_validated_per_clip_and_no_row_is_dropped(with_qa, tiny_zoo):
    assert with_qa.num_rows == 4
    # the violin pair is grounded only where the clip's music cue names a violin
    assert with_qa["qa_pairs"][:2] == [PAIRS[:2], PAIRS]
    assert with_qa["qa_rejected"][:2] == [[VIOLIN_REJECTED], []]
    assert with_qa["errors"][:3] == [[], [], []]
    # an uncertain clip has no caption: nothing to ask, and no error
    assert with_qa["qa_pairs"][2] is None and with_qa["provenance"][2] == [FUSION_ENTRY]
    # nothing the model says is about rain: every pair is rejected, re-asked, then the row's error
    assert with_qa["qa_pairs"][3] is None
    (error,) = with_qa["errors"][3]
    assert error["stage"] == "qa" and error["message"].startswith("invalid answer after 2 re-asks: ")
    assert [entries and entries[-1]["reasks"] for entries in with_qa["llm_usage"]] == [0, 0, None, 2]
    entries = with_qa["provenance"][0]
    assert entries[0] == FUSION_ENTRY and entries[1]["stage"] == "qa" and entries[1]["prompt"] == "qa_v1"
    assert entries[1]["model"] == "local:qa-lm"


def test_a_rerun_asks_again_only_for_the_failed_clip(with_qa, tiny_zoo):
    # the random-weight chat-lm writes no QA JSON, so the retried clip fails anew
    rerun = generate_qa(with_qa, tiny_zoo["chat-lm"], max_new_tokens=32)

    assert rerun["qa_pairs"] == with_qa["qa_pairs"]
    assert rerun["errors"][:3] == [[], [], []]
    (error,) = rerun["errors"][3]  # the first run's QA error is replaced, not kept beside the new one
    assert error["stage"] == "qa" and error["message"].startswith("invalid answer after 2 re-asks: ")
    models = [[entry["model"] for entry in entries[1:]] for entries in rerun["provenance"]]
    assert models == [["local:qa-lm"]] * 2 + [[]] + [["local:chat-lm"]]


def test_a_caption_the_filter_removed_is_not_asked_and_loses_an_earlier_answer(with_qa, tiny_zoo):
    # the filter's verdict: clip-0 removed, clip-1 kept, clip-3 (whose QA failed) removed
    filtered = with_qa.add_column("clap_keep", [False, True, False, False])
    filtered = filtered.map(lambda row: {"qa_pairs": None}, features=filtered.features)  # a redo resets them
    rerun = generate_qa(filtered, tiny_zoo["qa-lm"])

    assert rerun["qa_pairs"] == [None, PAIRS, None, None]
    usage = [[entry["stage"] for entry in entries or []] for entries in rerun["llm_usage"]]
    assert usage == [[], ["qa"], [], []]  # the first run's answers of clips 0 and 3 no longer describe them
    assert [[entry["stage"] for entry in entries] for entries in rerun["provenance"]] == [
        ["fusion"], ["fusion", "qa"], ["fusion"], ["fusion"]]
    assert explode_qa(rerun)["clip_id"] == ["clip-1"] * 3
    qa = QAGenerator(backend=TransformersBackendConfig(model=str(tiny_zoo["qa-lm"]), device="cpu"))
    assert "clap_keep" in qa.reads()  # so a new filter threshold reruns QA


def test_explode_qa_gives_one_row_per_pair(with_qa):
    qa = explode_qa(with_qa)

    assert qa.column_names == ["id", "clip_id", "question", "answer", "qa_type"]
    assert qa.num_rows == 5
    assert qa["id"] == ["clip-0-0", "clip-0-1", "clip-1-0", "clip-1-1", "clip-1-2"]
    assert qa["clip_id"] == ["clip-0"] * 2 + ["clip-1"] * 3
    assert qa[2] == {"id": "clip-1-0", "clip_id": "clip-1", **PAIRS[0]}
    assert explode_qa(with_qa.select([2, 3])).num_rows == 0


def test_export_to_the_fusionaudio_format(with_qa, tmp_path):
    # audio as a folder input stores it: absolute paths; clip-1's file lies outside the audio root
    audio = ["/data/audioset/a/clip-0.wav", "/elsewhere/clip-1.wav", "/data/audioset/c.wav", "/data/audioset/d.wav"]
    clips = with_qa.add_column("audio", audio)
    rows = to_fusionaudio(clips, explode_qa(clips), audio_root="/data/audioset/")

    assert len(rows) == 3 + 5  # three captions (the uncertain clip has none), five pairs
    # audio_id: the audio file's path (FusionAudio's README: "path_to_audio_file"), relative to the root
    assert rows[0] == {"audio_id": "a/clip-0.wav", "instruction": "Describe the audio in detail.", "input": "",
                       "dataset": "audioset", "task": "Captioning questions", "output": FUSION_CAPTION,
                       "id": "clip-0"}
    assert [(row["id"], row["audio_id"]) for row in rows[:3]] == [
        ("clip-0", "a/clip-0.wav"), ("clip-1", "/elsewhere/clip-1.wav"), ("clip-3", "d.wav")]
    assert rows[4] == {"audio_id": "a/clip-0.wav", "instruction": "How many times does the dog bark?", "input": "",
                       "dataset": "audioset", "task": "Counting and order questions", "output": "Twice.",
                       "id": "clip-0"}
    tasks = ["Sound sources questions", "Counting and order questions"]
    assert [row["task"] for row in rows[3:]] == [*tasks, *tasks, "Music attributes questions"]
    path = write_fusionaudio(rows, tmp_path / "out" / "fusionaudio.json")
    assert json.loads(path.read_text(encoding="utf-8")) == rows
    assert [row["audio_id"] for row in to_fusionaudio(clips)] == [audio[0], audio[1], audio[3]]  # no root
    assert {row["audio_id"] for row in to_fusionaudio(with_qa)} == {None}  # no audio column: said, null
