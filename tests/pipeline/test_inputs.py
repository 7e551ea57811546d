import json
import logging
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest

from fusion_datasets.cli import main
from fusion_datasets.media import MediaBatch
from fusion_datasets.pipeline.config import InputConfig
from fusion_datasets.pipeline.inputs import InputError, clip_ids, load_input
from fusion_datasets.testing import media
from fusion_datasets.testing.runs import TAGGING_ONLY

# Root reads any folder whatever its mode: this child drops that power (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)
# from its bounding set, then starts the command line, which reads folders by their modes like any user.
AS_A_USER = """
import ctypes, os, sys
if os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0):  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
os.execv(sys.executable, [sys.executable, "-c", "import sys; from fusion_datasets.cli import main; "
                          "sys.exit(main(sys.argv[1:]))", *sys.argv[1:]])
"""

# Decode every clip of a folder cut into 10 s clips, as the experts do (native rate, then 16 kHz); print the peak RSS.
MEASURE = """
import resource, sys
from fusion_datasets.media import MediaBatch
from fusion_datasets.pipeline.config import InputConfig
from fusion_datasets.pipeline.inputs import InputError, clip_ids, load_input
ds = load_input(InputConfig(path=sys.argv[1], segment_seconds=10.0))
for batch in ds.iter(batch_size=8):
    assert all(clip is not None for clip in MediaBatch(batch).audio(16000))
print(ds.num_rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _run(folder, output, *extra):
    return main(["run", "tiny", "--input", str(folder), "--output", str(output), *TAGGING_ONLY, *extra])


def _cues(output):
    return {row["id"]: row for row in datasets.load_dataset(str(output), "cues", split="train")}


def _clip(path, seconds=1.0, rate=16000):
    return media.write_audio(path, media.noise(seconds, rate), rate)


def test_files_sharing_a_stem_are_each_a_clip_named_by_their_suffix(tmp_path, caplog):
    folder = tmp_path / "field-recordings"
    _clip(folder / "2023" / "dup.wav")
    _clip(folder / "2023" / "dup.flac")
    _clip(folder / "2023" / "Case.wav")
    _clip(folder / "2023" / "Case.WAV")
    media.write_video(folder / "cams" / "vid.mp4", 1.0, fps=5, size=(32, 32))
    media.write_video(folder / "cams" / "vid.mkv", 1.0, fps=5, size=(32, 32))
    _clip(folder / "cams" / "walk.wav")
    media.write_video(folder / "cams" / "walk.mp4", 1.0, fps=5, size=(32, 32))

    with caplog.at_level(logging.WARNING):
        clips = {row["id"]: row for row in load_input(InputConfig(path=str(folder)))}

    assert sorted(clips) == ["2023/Case.WAV", "2023/Case.wav", "2023/dup.flac", "2023/dup.wav",
                             "cams/vid.mkv", "cams/vid.mp4", "cams/walk"]
    assert clips["2023/dup.flac"]["audio"].endswith("dup.flac") and clips["2023/dup.flac"]["video"] is None
    assert clips["cams/vid.mkv"]["audio"] == clips["cams/vid.mkv"]["video"] == str(folder / "cams" / "vid.mkv")
    assert clips["cams/walk"]["audio"].endswith("walk.wav") and clips["cams/walk"]["video"].endswith("walk.mp4")
    assert "6 media files" in caplog.text and "2023/dup.flac" in caplog.text
    assert sorted(load_input(InputConfig(path=str(folder)))["id"]) == sorted(clips)  # the same ids every scan


def test_symlinked_folders_are_read_once_and_unreadable_ones_are_counted(tmp_path, tiny_zoo):
    folder = tmp_path / "archive"
    _clip(folder / "2023" / "a.wav")
    _clip(tmp_path / "disk2" / "2024" / "b.wav")
    os.symlink(tmp_path / "disk2" / "2024", folder / "2024")  # a year kept on another disk
    os.symlink(folder, folder / "2023" / "all")  # a link back up: a loop
    _clip(folder / "private" / "c.wav")
    (folder / "private").chmod(0)
    output = tmp_path / "out"
    try:
        done = subprocess.run([sys.executable, "-c", AS_A_USER, "run", "tiny", "--input", str(folder),
                               "--output", str(output), *TAGGING_ONLY], check=False, capture_output=True, text=True)
    finally:
        (folder / "private").chmod(0o755)

    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(_cues(output)) == ["2023/a", "2024/b"]
    assert json.loads((output / "stats.json").read_text())["input_unreadable"] == 1
    assert "1 folders under" in done.stderr and "private (Permission denied)" in done.stderr


def test_a_stray_parquet_does_not_turn_a_media_folder_into_a_table(tmp_path, tiny_zoo, capsys, caplog):
    folder = tmp_path / "clips"
    for name in ("a", "b", "c"):
        _clip(folder / f"{name}.wav")
    table = [{"id": f"row{index}", "audio": str(folder / "a.wav")} for index in range(5)]
    datasets.Dataset.from_list(table).to_parquet(str(folder / "notes" / "index.parquet"))
    only_tables = tmp_path / "tables"
    datasets.Dataset.from_list(table).to_parquet(str(only_tables / "part-0.parquet"))

    def clips(path, *extra):
        code = _run(path, tmp_path / "out", "--dry-run", *extra)
        return code, capsys.readouterr()

    with caplog.at_level(logging.WARNING):
        code, said = clips(folder)
    assert code == 0 and "3 clips from" in said.out and "1 Parquet files in it are not read" in caplog.text
    assert "5 clips from" in clips(folder, "--set", "input.format=parquet")[1].out
    assert "5 clips from" in clips(only_tables)[1].out  # auto: Parquet files and no media
    code, said = clips(only_tables, "--set", "input.format=media")
    assert code == 2 and "no audio or video files in" in said.err


def test_a_saved_dataset_dict_is_read_by_its_split(tmp_path, tiny_zoo, capsys):
    clip = str(_clip(tmp_path / "a.wav"))
    splits = {"train": 3, "test": 2, "validation": 1}
    saved = datasets.DatasetDict({split: datasets.Dataset.from_dict({"id": [f"{split}{i}" for i in range(rows)],
                                                                     "audio": [clip] * rows})
                                  for split, rows in splits.items()})
    saved.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({name: saved[name] for name in ("test", "validation")}).save_to_disk(str(tmp_path / "eval"))

    assert _run(tmp_path / "saved", tmp_path / "out", "--dry-run") == 0
    assert "3 clips from" in capsys.readouterr().out
    assert _run(tmp_path / "saved", tmp_path / "out", "--dry-run", "--set", "input.split=test") == 0
    assert "2 clips from" in capsys.readouterr().out
    assert _run(tmp_path / "eval", tmp_path / "out", "--dry-run") == 2
    assert "has no split 'train'; its splits: test, validation" in capsys.readouterr().err


def test_a_table_without_audio_is_refused_before_any_work(tmp_path, tiny_zoo, capsys):
    datasets.Dataset.from_dict({"id": ["a", "b"], "caption": ["x", "y"]}).to_parquet(str(tmp_path / "clips.parquet"))
    assert _run(tmp_path / "clips.parquet", tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "has no `audio` column (columns: id, caption)" in error and "`video` (a path)" in error
    assert not (tmp_path / "out").exists()


def test_long_files_are_cut_into_clips_that_carry_their_offsets(tmp_path, tiny_zoo):
    folder = tmp_path / "recordings"
    _clip(folder / "meeting.flac", 25.0)
    _clip(folder / "short.wav", 4.0)
    media.write_video(folder / "walk.mp4", 12.0, fps=2, size=(32, 32), audio=media.noise(12.0, 16000))
    output = tmp_path / "out"
    assert _run(folder, output, "--set", "input.segment_seconds=10") == 0

    cues = _cues(output)
    assert sorted(cues) == ["meeting@0-10", "meeting@10-20", "meeting@20-25", "short", "walk"]
    assert [(cues[clip]["start"], cues[clip]["end"]) for clip in sorted(cues)] == [
        (0.0, 10.0), (10.0, 20.0), (20.0, 25.0), (None, None), (None, None)]
    assert all(row["errors"] == [] and row["audio_tags"] for row in cues.values())


def test_decoding_a_long_file_in_clips_takes_the_memory_of_one_clip(tmp_path):
    ten_seconds = media.noise(10.0, 44100, channels=2)
    media.write_audio(tmp_path / "short" / "take.wav", ten_seconds, 44100)
    media.write_audio(tmp_path / "long" / "take.wav", np.tile(ten_seconds, 60), 44100)  # 10 minutes

    def peak(folder):
        done = subprocess.run([sys.executable, "-c", MEASURE, str(folder)], capture_output=True, text=True, check=True)
        clips, rss = map(int, done.stdout.split())
        return clips, rss

    (short_clips, short_rss), (long_clips, long_rss) = peak(tmp_path / "short"), peak(tmp_path / "long")
    assert (short_clips, long_clips) == (1, 60)
    assert long_rss <= 1.2 * short_rss, (long_rss, short_rss)


def test_a_truncated_mp3_decodes_with_a_warning_saying_what_is_missing(tmp_path):
    truncated = media.write_truncated_mp3(tmp_path / "cut.mp3")
    whole = tmp_path / "whole.mp3"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(_clip(tmp_path / "w.wav", 5.0, 44100)),
                    str(whole)], check=True)
    batch = MediaBatch({"audio": [str(truncated), str(whole)]})
    cut, intact = batch.waveforms()
    assert 2.0 < cut.duration < 3.0 and intact.duration == pytest.approx(5.0, abs=0.1)
    ((error,), none) = batch.errors
    assert error["stage"] == "decode_warning" and none == []
    assert "ends at 2." in error["message"] and "header claims 5.0" in error["message"]


def test_too_long_and_truncated_files_are_recorded_per_row_and_retried_by_the_limit(tmp_path, tiny_zoo):
    folder = tmp_path / "clips"
    _clip(folder / "ok.wav", 2.0)
    _clip(folder / "long.wav", 8.0)
    media.write_truncated_mp3(folder / "cut.mp3")
    output = tmp_path / "out"
    assert _run(folder, output, "--set", "input.max_seconds=6") == 0

    cues = _cues(output)
    assert cues["ok"]["errors"] == [] and cues["ok"]["audio_tags"]
    assert [error["stage"] for error in cues["long"]["errors"]] == ["decode"]
    assert "8 s long, over input.max_seconds=6" in cues["long"]["errors"][0]["message"]
    assert cues["long"]["audio_tags"] is None
    assert [error["stage"] for error in cues["cut"]["errors"]] == ["decode_warning"] and cues["cut"]["audio_tags"]
    stats = json.loads((output / "stats.json").read_text())
    assert stats["stages"]["decode"] == {"rows": 3, "errors": 1}  # the warning is not a failed decode

    assert _run(folder, output, "--set", "input.max_seconds=10", "--retry-errors") == 0
    cues = _cues(output)
    assert cues["long"]["errors"] == [] and cues["long"]["audio_tags"]
    assert [error["stage"] for error in cues["cut"]["errors"]] == ["decode_warning"]
    stats = json.loads((output / "stats.json").read_text())
    assert stats["stages"]["decode"] == {"rows": 4, "errors": 1}  # only the too-long clip was redone
    assert stats["errors_by_stage"] == {"decode_warning": 1}


def test_a_run_on_a_relative_folder_loads_and_decodes_from_another_directory(tmp_path, tiny_zoo, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    _clip(work / "clips" / "dog.wav")
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    assert _run("clips", "out") == 0  # paths as a user types them, relative to where the command runs
    monkeypatch.chdir(elsewhere)
    cues = datasets.load_dataset(str(work / "out"), "cues", split="train").cast_column("audio", datasets.Audio())
    assert cues[0]["audio"].get_all_samples().data.shape[-1] == 16000


def test_an_integer_id_column_is_named_as_such(tmp_path, tiny_zoo, capsys):
    audio = media.write_audio(tmp_path / "a.wav", media.speech(1.0, 16000), 16000)
    datasets.Dataset.from_dict({"id": [1, 2], "audio": [str(audio)] * 2}).to_parquet(str(tmp_path / "in.parquet"))
    assert main(["run", "tiny", "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "`id` must be a string column" in error and "int64" in error and "have no id" not in error


@pytest.mark.parametrize("output", ["the input", "its parent"])
def test_an_output_that_is_or_holds_the_input_is_refused_in_words(tmp_path, tiny_zoo, capsys, output):
    clips = tmp_path / "clips"
    media.write_audio(clips / "a.wav", media.speech(1.0, 16000), 16000)
    out = clips if output == "the input" else tmp_path
    assert main(["run", "tiny", "--input", str(clips), "--output", str(out)]) == 2
    error = capsys.readouterr().err
    assert "the output cannot be the input folder or hold it" in error and "no audio or video files" not in error


def test_clip_ids_are_read_through_the_rows_a_limit_or_a_selection_keeps(tmp_path):
    ds = datasets.Dataset.from_dict({"id": [f"clip{index}" for index in range(5)], "audio": ["a.wav"] * 5})
    assert clip_ids(ds.select([4, 0, 2])) == ["clip4", "clip0", "clip2"]  # an indices mapping, not the table
    repeated = datasets.concatenate_datasets([ds, ds.select([3])])  # two Arrow chunks, one id twice
    with pytest.raises(InputError, match=r"1 ids occur more than once in the input: 'clip3' \(2 times\)"):
        clip_ids(repeated)
    with pytest.raises(InputError, match=r"1 clips have no id .*row 1 \(''\)"):
        clip_ids(datasets.Dataset.from_dict({"id": ["a", "", "b"]}))
