"""The source builders (AudioSet, a media folder, the FusionAudio release) and the leakage guard."""

import csv
import json
import os

import datasets
import pytest

from fusion_datasets.builders import benchmark_clip_ids, recorded_benchmarks
from fusion_datasets.cli import main
from fusion_datasets.media import decode_audio
from fusion_datasets.pipeline.config import InputConfig
from fusion_datasets.pipeline.inputs import load_input
from fusion_datasets.testing import media

SEGMENTS = """\
# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=6, num_segs=6, num_unique_labels=4, num_positive_labels=8
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"
-0RWZT-miFs, 420.000, 430.000, "/m/0bt9lr,/m/05tny_"
0VjmQ0aK9aQ, 30.000, 40.000, "/m/04rlf"
ZZZmissing1, 0.000, 10.000, "/m/09x0r"
abcdefghijk, 20.000, 30.000, "/m/09x0r,/m/not-a-label"
truncated_1, 10.000"""

LABELS = """\
index,mid,display_name
0,/m/09x0r,"Speech"
137,/m/04rlf,"Music"
74,/m/0bt9lr,"Dog"
75,/m/05tny_,"Bark"
"""


@pytest.fixture
def audioset_dir(tmp_path, write_clip):
    folder = tmp_path / "audioset"
    folder.mkdir()
    (folder / "eval_segments.csv").write_text(SEGMENTS)
    (folder / "class_labels_indices.csv").write_text(LABELS)
    write_clip(folder / "clips" / "Y--PJHxphWEs.wav")
    write_clip(folder / "clips" / "-0RWZT-miFs_420.000_430.000.flac", seed=1)
    write_clip(folder / "clips" / "0VjmQ0aK9aQ_30_40.wav", seed=2)  # and its video: one clip
    media.write_video(folder / "clips" / "0VjmQ0aK9aQ_30_40.mp4", 1.0, fps=5, size=(32, 32))
    return folder


def test_audioset_joins_segments_and_clips_and_lists_missing_ones(
    tmp_path, audioset_dir, where, cli_build, load
):
    output = tmp_path / "audioset-out"
    stats = cli_build("audioset", audioset_dir, output)
    assert stats["written"] == 3
    assert stats["skipped"] == {"missing_audio": 1, "unknown_label": 1, "bad_csv_line": 1}
    assert where(stats) == [("bad_csv_line", "audioset/eval_segments.csv:9"),
                            ("unknown_label", "audioset/eval_segments.csv:8")]
    with open(output / "missing_clips.csv", newline="") as handle:
        (missing,) = csv.DictReader(handle)
    assert missing == {"id": "ZZZmissing1_0_10", "where": f"{audioset_dir}/eval_segments.csv:7",
                       "reference": "ZZZmissing1"}

    built = load(output, "train").cast_column("audio", datasets.Audio(decode=False))
    rows = {row["id"]: row for row in built}
    assert sorted(rows) == ["--PJHxphWEs_30_40", "-0RWZT-miFs_420_430", "0VjmQ0aK9aQ_30_40"]
    assert rows["--PJHxphWEs_30_40"]["audio_tags"] == [{"label": "Speech", "score": 1.0},
                                                       {"label": "Music", "score": 1.0}]
    assert rows["0VjmQ0aK9aQ_30_40"]["video"].endswith("0VjmQ0aK9aQ_30_40.mp4")
    assert rows["-0RWZT-miFs_420_430"]["audio"]["path"].endswith(".flac")
    assert all(row["start"] is None and row["source"] == "audioset" for row in rows.values())

    clips = load_input(InputConfig(path=str(output)))  # the pipeline reads the build as its input
    assert sorted(clips["id"]) == sorted(rows) and clips.features["audio"] == datasets.Audio(decode=False)
    assert decode_audio(clips[0]["audio"]).samples.shape[1] > 0


@pytest.mark.parametrize("untrimmed", [["--no-trimmed"], ["--set", "trimmed=false"]])
def test_whole_videos_are_cut_at_the_segment_times(untrimmed, tmp_path, audioset_dir, cli_build, load):
    stats = cli_build("audioset", audioset_dir, tmp_path / "out", *untrimmed)
    rows = {row["id"]: row for row in load(tmp_path / "out", "train")}
    assert stats["written"] == 3
    assert (rows["--PJHxphWEs_30_40"]["start"], rows["--PJHxphWEs_30_40"]["end"]) == (30.0, 40.0)
    assert rows["-0RWZT-miFs_420_430"]["start"] is None  # its file name says it holds the segment


def test_the_leakage_guard_leaves_benchmark_clips_out_of_sources(
    tmp_path, audioset_dir, cli_build, load, write_clip
):
    audiocaps = tmp_path / "audiocaps"
    audiocaps.mkdir()
    (audiocaps / "test.csv").write_text("audiocap_id,youtube_id,start_time,caption\n1,--PJHxphWEs,30,Hi\n")
    write_clip(audiocaps / "Y--PJHxphWEs.wav")
    clotho = tmp_path / "clotho"
    (clotho / "evaluation").mkdir(parents=True)
    (clotho / "clotho_captions_evaluation.csv").write_text("file_name,caption_1\nnotes.wav,A voice\n")
    write_clip(clotho / "evaluation" / "notes.wav")
    cli_build("audiocaps", audiocaps, tmp_path / "audiocaps-built")
    cli_build("clotho", clotho, tmp_path / "clotho-built")
    built = [tmp_path / "audiocaps-built", tmp_path / "clotho-built"]
    assert set(benchmark_clip_ids(*built).starts) == {"--PJHxphWEs", "notes"}

    stats = cli_build("audioset", audioset_dir, tmp_path / "guarded", "--exclude", str(built[0]))
    assert (stats["written"], stats["excluded_benchmark_clips"]) == (2, 1)
    assert "--PJHxphWEs_30_40" not in load(tmp_path / "guarded", "train")["id"]

    folder = tmp_path / "mine"
    write_clip(folder / "notes.wav")
    write_clip(folder / "birds.wav")
    stats = cli_build("folder", folder, tmp_path / "folder-guarded", "--exclude", str(built[1]))
    assert (stats["written"], stats["excluded_benchmark_clips"]) == (1, 1)

    # by default: every test set built on this machine (recorded by `build`), without naming it
    assert recorded_benchmarks() == sorted(path.resolve() for path in built)
    stats = cli_build("audioset", audioset_dir, tmp_path / "by-default")
    assert (stats["written"], stats["excluded_benchmark_clips"]) == (2, 1)
    stats = cli_build("audioset", audioset_dir, tmp_path / "unguarded", "--no-leakage-guard")
    assert (stats["written"], stats["excluded_benchmark_clips"]) == (3, 0)


AUDIOCAPS_TEST = """\
audiocap_id,youtube_id,start_time,caption
103549,7fmOlUlwoNg,20,Constant rattling noise and sharp vibrations
103550,6BJ455B1aAs,0,A goat bleating repeatedly
103551,GOD8Bt5LfDE,100,Wind blows and a woman speaks
103552,YEGhRlTmJEE,30,A motorboat engine runs
"""


def test_the_leakage_guard_records_every_clip_of_the_metadata(tmp_path, audioset_dir, cli_build, write_clip):
    """AudioCaps built with one of its four test clips on disk still keeps all four out of sources."""
    audiocaps = tmp_path / "audiocaps"
    audiocaps.mkdir()
    (audiocaps / "test.csv").write_text(AUDIOCAPS_TEST)
    write_clip(audiocaps / "Y7fmOlUlwoNg.wav")
    stats = cli_build("audiocaps", audiocaps, tmp_path / "audiocaps-built")
    assert (stats["written"], stats["benchmark_clips"]) == (1, 4)
    with open(tmp_path / "audiocaps-built" / "benchmark_clips.csv", newline="") as handle:
        assert {(row["clip_id"], row["start"]) for row in csv.DictReader(handle)} == {
            ("7fmOlUlwoNg", "20"), ("6BJ455B1aAs", "0"), ("GOD8Bt5LfDE", "100"), ("YEGhRlTmJEE", "30")}

    folder = tmp_path / "downloads"  # three AudioCaps test clips, named in three layouts, and one other segment
    write_clip(folder / "Y6BJ455B1aAs.wav")
    write_clip(folder / "GOD8Bt5LfDE_100.000_110.000.wav")
    write_clip(folder / "sub" / "YEGhRlTmJEE_30-40.flac")
    write_clip(folder / "GOD8Bt5LfDE_250.000_260.000.wav")  # the same video at another time: not a test clip
    stats = cli_build("folder", folder, tmp_path / "folder-built")
    assert (stats["written"], stats["excluded_benchmark_clips"]) == (1, 3)
    assert load_input(InputConfig(path=str(tmp_path / "folder-built")))["id"] == ["GOD8Bt5LfDE_250.000_260.000"]


def test_the_audioset_source_leaves_out_audiocaps_segments_by_their_start(tmp_path, audioset_dir, cli_build):
    audiocaps = tmp_path / "audiocaps"
    audiocaps.mkdir()
    (audiocaps / "test.csv").write_text("audiocap_id,youtube_id,start_time,caption\n"
                                        "1,--PJHxphWEs,30,Speech and music\n2,-0RWZT-miFs,100,A dog\n")
    cli_build("audiocaps", audiocaps, tmp_path / "audiocaps-built", "--allow-empty")
    stats = cli_build("audioset", audioset_dir, tmp_path / "audioset-built")
    assert (stats["written"], stats["excluded_benchmark_clips"]) == (2, 1)  # -0RWZT-miFs is at 420 there


@pytest.mark.parametrize("name", ["esc50", "audiocaps", "clotho", "folder", "audioset"])
def test_a_build_made_from_relative_paths_loads_from_any_directory(tmp_path, monkeypatch, write_clip, name):
    """Every builder stores absolute audio paths (links kept), so a build loads from another directory."""
    layouts = {
        "esc50": {"meta/esc50.csv": "filename,fold,target,category,esc10,src_file,take\n"
                                    "1-100038-A-14.wav,1,14,chirping_birds,False,100038,A\n",
                  "audio/1-100038-A-14.wav": None},
        "audiocaps": {"test.csv": "audiocap_id,youtube_id,start_time,caption\n1,--PJHxphWEs,30,Hi\n",
                      "Y--PJHxphWEs.wav": None},
        "clotho": {"clotho_captions_evaluation.csv": "file_name,caption_1\nnotes.wav,A voice\n",
                   "evaluation/notes.wav": None},
        "folder": {"birds.wav": None},
        "audioset": {"eval_segments.csv": "--PJHxphWEs, 30.000, 40.000, \"/m/09x0r\"\n", "Y--PJHxphWEs.wav": None},
    }
    data = tmp_path / "work" / "data"
    for path, text in layouts[name].items():
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        write_clip(data / path) if text is None else (data / path).write_text(text)
    monkeypatch.chdir(tmp_path / "work")
    assert main(["build", name, "--data-dir", "data", "--output", "built", "--no-leakage-guard"
                 if name in ("folder", "audioset") else "--allow-empty"]) == 0
    monkeypatch.chdir(tmp_path)
    split = "train" if name in ("folder", "audioset") else "test"
    (row,) = datasets.load_dataset(str(tmp_path / "work" / "built"), split=split)
    assert row["audio"].metadata.path.startswith(str(data) + os.sep)
    assert row["audio"].get_all_samples().data.shape[1] > 0


def test_clips_in_a_symlinked_subfolder_are_found(tmp_path, cli_build, write_clip):
    """AudioCaps clips in ``test/``, a link to another disk, under the data folder."""
    write_clip(tmp_path / "other-disk" / "Y--PJHxphWEs.wav")
    (tmp_path / "audiocaps").mkdir()
    (tmp_path / "audiocaps" / "test.csv").write_text("audiocap_id,youtube_id,start_time,caption\n1,--PJHxphWEs,30,Hi\n")
    os.symlink(tmp_path / "other-disk", tmp_path / "audiocaps" / "test")
    assert cli_build("audiocaps", tmp_path / "audiocaps", tmp_path / "built")["written"] == 1


def test_a_media_folder_pairs_audio_with_video_and_reads_its_metadata(tmp_path, where, cli_build, write_clip):
    folder = tmp_path / "media"
    write_clip(folder / "a.wav")
    write_clip(folder / "b.wav")
    media.write_video(folder / "b.mp4", 1.0, fps=5, size=(32, 32))
    media.write_video(folder / "sub" / "c.mp4", 1.0, fps=5, size=(32, 32), audio=media.noise(1.0, 16000))
    write_clip(tmp_path / "elsewhere" / "linked.wav")
    os.symlink(tmp_path / "elsewhere" / "linked.wav", folder / "linked.wav")  # the user's layout: a clip
    (folder / "metadata.csv").write_text(
        "id,caption,license,tags\n"
        'b,"A dog barks, twice",cc-by-4.0,"Dog;Bark"\n'
        "sub/c,,cc0-1.0,\n"
        "ghost,Not on disk,cc0-1.0,\n"
    )
    output = tmp_path / "folder-out"
    stats = cli_build("folder", folder, output)
    assert stats["written"] == 4
    assert stats["skipped"] == {"missing_audio": 1} and where(stats) == []
    rows = {row["id"]: row for row in load_input(InputConfig(path=str(output)))}
    assert sorted(rows) == ["a", "b", "linked", "sub/c"]
    assert rows["linked"]["audio"]["path"] == str(folder / "linked.wav")  # the link, not its target
    assert rows["b"]["video"].endswith("b.mp4") and rows["b"]["audio"]["path"].endswith("b.wav")
    assert rows["b"]["source_caption"] == "A dog barks, twice" and rows["b"]["license"] == "cc-by-4.0"
    assert [tag["label"] for tag in rows["b"]["audio_tags"]] == ["Dog", "Bark"]
    assert rows["sub/c"]["audio"]["path"].endswith("c.mp4") and rows["a"]["audio_tags"] == []
    assert (output / "missing_clips.csv").read_text().splitlines()[1].startswith("ghost,")


def _release_row(audio_id, instruction, task, output):
    return {"audio_id": audio_id, "instruction": instruction, "input": "", "dataset": "AudioSet",
            "task": task, "output": output}


def test_the_fusionaudio_release_becomes_captions_and_qa(tmp_path, cli_build, load, write_clip):
    release = tmp_path / "release"
    release.mkdir()
    caption, question = "Describe the audio in detail.", "How many voices are there?"
    rows = [
        _release_row("/data/audioset/Y--PJHxphWEs.wav", caption, "Captioning questions", "A man speaks."),
        _release_row("/data/audioset/Y--PJHxphWEs.wav", question, "Counting and order questions", "One."),
        _release_row("/data/audioset/Y--PJHxphWEs.wav", caption, "Captioning questions", "A second caption."),
        _release_row("/data/audioset/Y0VjmQ0aK9aQ.wav", caption, "Captioning questions", "Music plays."),
        {"audio_id": 12, "output": "not a row"},
    ]
    (release / "fusionaudio_part1.json").write_text(json.dumps(rows, indent=1))
    write_clip(tmp_path / "audio" / "audioset" / "Y--PJHxphWEs.wav")
    output = tmp_path / "release-out"
    stats = cli_build("fusionaudio", release, output, "--audio-root", str(tmp_path / "audio"))
    captions = load(output, "train", "captions")
    qa = load(output, "train", "qa")
    assert captions["id"] == ["--PJHxphWEs"] and captions[0]["caption"] == "A man speaks."
    assert captions[0]["audio"].metadata.path.endswith("Y--PJHxphWEs.wav")
    assert qa.column_names == ["id", "clip_id", "audio_id", "question", "answer", "qa_type"]
    assert (qa[0]["clip_id"], qa[0]["question"]) == ("--PJHxphWEs", question)
    assert qa[0]["qa_type"] == "counting_and_order"
    assert stats["skipped"] == {"duplicate_clip": 1, "missing_audio": 1, "bad_json_row": 1}  # counted once
    # each config in its unit; the file both configs read is read once
    assert (stats["written_by_unit"], stats["read"]) == ({"captions": 1, "QA pairs": 1}, {"JSON objects": 5})


@pytest.mark.slow
def test_the_tiny_pipeline_runs_on_an_audioset_build(tmp_path, tiny_zoo, audioset_dir, cli_build):
    """Two clips through the tiny pipeline with the tagging expert only: human labels are kept."""
    (audioset_dir / "clips" / "Y--PJHxphWEs.wav").unlink()
    cli_build("audioset", audioset_dir, tmp_path / "built")
    argv = ["run", "tiny", "--input", str(tmp_path / "built"), "--output", str(tmp_path / "run")]
    for expert in ("separation", "speech", "sound", "music", "visual"):
        argv += ["--set", f"experts.{expert}.enabled=false"]
    assert main(argv) == 0
    cues = {row["id"]: row for row in datasets.load_dataset(str(tmp_path / "run"), "cues", split="train")}
    assert sorted(cues) == ["-0RWZT-miFs_420_430", "0VjmQ0aK9aQ_30_40"]
    assert [tag["label"] for tag in cues["-0RWZT-miFs_420_430"]["audio_tags"]] == ["Dog", "Bark"]
    assert all(row["music_score"] is not None for row in cues.values())
