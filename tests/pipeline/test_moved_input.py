"""Reruns take what comes from the input as the input is now: a moved input's files are re-pointed without any
model work, and a redone stage merges the input's human labels again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from fusion_datasets.cli import main
from fusion_datasets.demo import write_sample_clips
from fusion_datasets.layout import config_files
from fusion_datasets.media import decode_audio
from fusion_datasets.pipeline.config import load_config
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.work import Work, redo_rows
from fusion_datasets.testing import media

FAST = ("--set", "experts.separation.enabled=false", "--set", "experts.visual.enabled=false",
        "--set", "experts.music.enabled=false")
DOG = {"label": "Dog", "score": 1.0}


def run(source: Path, output: Path, *extra: str) -> int:
    return main(["run", "tiny", "--input", str(source), "--output", str(output), *FAST, *extra])


def stats(output: Path) -> dict:
    return json.loads((output / "stats.json").read_text())


def cues(output: Path) -> dict[str, dict]:
    """The committed ``cues`` rows by id, read from the files the output lists."""
    return {row["id"]: row for path in config_files(output, "cues") for row in pq.read_table(path).to_pylist()}


def move(folder: Path, to: Path) -> Path:
    """``folder`` moved to ``to`` (another disk, as far as the output can tell)."""
    to.parent.mkdir(parents=True)
    return Path(shutil.move(str(folder), str(to)))


@pytest.fixture
def clips(tmp_path) -> Path:
    folder = tmp_path / "disk1" / "clips"
    write_sample_clips(folder)  # speech, music, silence, and street with its video
    return folder


def test_redo_rows_take_the_input_as_it_is_now():
    plan = Plan.from_config(load_config("tiny"))
    tag, failed = {"label": "Speech", "score": 0.5}, [{"stage": "tagging", "message": "out of memory"}]
    kept = datasets.Dataset.from_dict({"id": ["a", "b", "gone"], "audio": ["/old/a.wav", "/old/b.wav", "/old/gone.wav"],
                                       "audio_tags": [[tag], [tag], [tag]], "errors": [failed, [], []]})
    current = datasets.Dataset.from_dict({"id": ["b", "a"], "audio": ["/new/b.wav", "/new/a.wav"],
                                          "audio_tags": [[DOG], [DOG]]})
    rows = redo_rows(kept, current, plan, [Work(("tagging",), (0,))]).to_list()
    assert [row["audio"] for row in rows] == ["/new/a.wav", "/new/b.wav", "/old/gone.wav"]  # a gone clip keeps its own
    assert [row["audio_tags"] for row in rows] == [[DOG], [tag], [tag]]  # reset to the input's where tagging is redone
    assert [row["errors"] for row in rows] == [[], [], []]

    repointed = redo_rows(kept, current, plan, []).to_list()  # a moved input: only the files change
    assert [row["audio_tags"] for row in repointed] == [[tag], [tag], [tag]] and repointed[0]["errors"] == failed
    assert repointed[1]["audio"] == "/new/b.wav"


def test_a_moved_input_is_re_pointed_without_model_work_and_a_gone_file_is_reported(tmp_path, tiny_zoo, clips,
                                                                                     capsys):
    output = tmp_path / "out"
    assert run(clips, output) == 0
    before = stats(output)["stages"]
    moved = move(clips, tmp_path / "disk2" / "clips")

    assert run(moved, output, "--dry-run") == 0
    assert "1 parts to redo (files moved in the input: re-pointing them, no stage rerun)" in capsys.readouterr().out
    assert run(moved, output) == 0
    assert stats(output)["stages"] == before  # no stage ran: not a row, not a second
    rows = cues(output)
    assert {row["audio"] for row in rows.values()} == {str(moved / f"{clip}.wav") for clip in rows}
    assert rows["street"]["video"] == str(moved / "street.mp4")
    assert decode_audio(rows["speech"]["audio"]).samples.shape[1] > 0  # the output decodes from the new place
    loaded = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")
    decoded = loaded.cast_column("audio", datasets.Audio()).filter(lambda clip: clip == "music", input_columns="id")
    assert decoded[0]["audio"].get_all_samples().data.shape[-1] > 0

    (moved / "silence.wav").unlink()
    assert run(moved, output) == 0
    summary = stats(output)
    assert summary["clips_not_in_input"] == 1 and summary["stages"] == before  # reported, nothing redone
    assert "silence" in cues(output)  # kept, as output.removed_clips=keep says


def test_retry_errors_after_a_move_decodes_from_the_new_place(tmp_path, tiny_zoo, clips):
    media.write_audio(clips / "long.wav", media.noise(8.0, 16000), 16000)
    output = tmp_path / "out"
    assert run(clips, output, "--set", "input.max_seconds=6") == 0
    assert [error["stage"] for error in cues(output)["long"]["errors"]] == ["decode"]
    before = stats(output)["stages"]
    moved = move(clips, tmp_path / "disk2" / "clips")

    assert run(moved, output, "--set", "input.max_seconds=10", "--retry-errors") == 0
    rows = cues(output)
    assert rows["long"]["errors"] == [] and rows["long"]["audio_tags"]
    assert all(row["errors"] == [] and row["audio"].startswith(str(moved)) for row in rows.values())
    after = stats(output)["stages"]
    assert after["tagging"]["rows"] == before["tagging"]["rows"] + 1  # the long clip only: the rest re-pointed
    assert after["fusion"]["rows"] == before["fusion"]["rows"] + 1


def test_a_redone_tagging_keeps_the_human_labels_of_the_input(tmp_path, tiny_zoo):
    """Human labels come as the input's ``audio_tags`` with score 1.0 (as the AudioSet builder writes them)."""
    paths = [str(media.write_audio(tmp_path / f"c{index}.wav", media.noise(1.0, 16000, seed=index), 16000))
             for index in range(6)]
    labelled = {"c0", "c1", "c2", "c3"}
    table = tmp_path / "clips.parquet"
    datasets.Dataset.from_dict({"id": [f"c{index}" for index in range(6)], "audio": paths,
                                "audio_tags": [[DOG] if f"c{index}" in labelled else None for index in range(6)]}
                               ).to_parquet(str(table))
    output = tmp_path / "out"
    assert run(table, output) == 0
    before = stats(output)["stages"]
    assert {clip for clip, row in cues(output).items() if DOG in row["audio_tags"]} == labelled

    assert run(table, output, "--set", "experts.tagging.top_k=5") == 0
    rows = cues(output)
    assert {clip for clip, row in rows.items() if DOG in row["audio_tags"]} == labelled
    assert all(len(rows[clip]["audio_tags"]) == 5 for clip in ("c4", "c5"))  # tagged again, by the new top_k
    after = stats(output)["stages"]
    assert after["tagging"]["rows"] == 2 * before["tagging"]["rows"]
    for stage in ("speech", "sound"):  # the other experts are not rerun
        assert after[stage] == before[stage]
