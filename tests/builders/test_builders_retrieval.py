"""The retrieval benchmarks: one row per clip with its captions, as the retrieval evaluation reads them."""

import csv

import datasets

from fusion_datasets.builders import recorded_benchmarks
from fusion_datasets.cli import main
from fusion_datasets.eval.retrieval_eval import run_retrieval_eval

AUDIOCAPS = """\
audiocap_id,youtube_id,start_time,caption
97151,--PJHxphWEs,30,A man speaks while music plays
97152,--PJHxphWEs,30,"A man talks, then music plays"
97153,--PJHxphWEs,30,Someone speaks over music
97154,--PJHxphWEs,30,A voice and a song
97155,--PJHxphWEs,30,A man speaking with background music
97160,-0RWZT-miFs,420,A dog barks
97161,-0RWZT-miFs,420,"Dogs bark, a man shouts"
97162,-0RWZT-miFs,nowhere,A dog is barking
97170,ZZZmissing1,0,Wind blows
97171,ZZZmissing1,0,Strong wind
97180,abcdefghijk,10,
"""


def test_audiocaps_groups_the_captions_of_each_clip(tmp_path, capsys, cli_build, load, write_clip, where):
    data = tmp_path / "audiocaps"
    data.mkdir()
    (data / "test.csv").write_text(AUDIOCAPS)
    write_clip(tmp_path / "clips" / "Y--PJHxphWEs.wav")
    write_clip(tmp_path / "clips" / "-0RWZT-miFs_420.000_430.000.wav")
    output = tmp_path / "built"
    stats = cli_build("audiocaps", data, output, "--audio-root", str(tmp_path / "clips"))
    ds = load(output)
    assert ds.features["captions"] == datasets.List(datasets.Value("string"))
    rows = {row["id"]: row["captions"] for row in ds}
    assert rows["--PJHxphWEs"][1] == "A man talks, then music plays" and len(rows["--PJHxphWEs"]) == 5
    assert rows["-0RWZT-miFs"] == ["A dog barks", "Dogs bark, a man shouts", "A dog is barking"]
    assert ds["clip_id"] == ds["id"]
    assert stats["skipped"] == {"missing_audio": 2, "empty_field": 1}
    assert where(stats) == [("empty_field", "audiocaps/test.csv:12")]
    assert stats["missing_clips"] == 1  # one clip, two caption rows
    # clips written, metadata lines read and skipped: each count in its unit
    assert (stats["written_by_unit"], stats["read"]) == ({"clips": 2}, {"metadata lines": 11})
    assert capsys.readouterr().out.splitlines()[:2] == [
        "audiocaps (test): 2 clips written; 11 metadata lines read, 3 skipped (missing_audio: 2, empty_field: 1)",
        f"  warning: 1 clip missing on disk, listed in {output}/missing_clips.csv"]
    assert ds[0]["audio"].get_all_samples().data.shape[1] > 0  # the evaluation decodes the audio column


def test_clotho_keeps_file_names_with_commas_and_rejects_escaping_paths(
    tmp_path, cli_build, load, write_clip, where
):
    data = tmp_path / "clotho"
    (data / "evaluation").mkdir(parents=True)
    write_clip(data / "evaluation" / "Creaking pier, old.wav")
    write_clip(data / "evaluation" / "river_mouth3.wav")
    write_clip(tmp_path / "secret.wav")
    captions = ",".join(f"caption_{index}" for index in range(1, 6))
    (data / "clotho_captions_evaluation.csv").write_text(
        f"file_name,{captions}\n"
        '"Creaking pier, old.wav",Wood creaks,"Waves lap, wood creaks",A pier,Creaking,Old wood\n'
        "river_mouth3.wav,Water flows,A river,Waves,Water,Stream\n"
        "../../secret.wav,A secret,b,c,d,e\n"
        "gone.wav,Nothing,b,c,d,e\n"
        "silent.wav,,,,,\n"
    )
    output = tmp_path / "built"
    stats = cli_build("clotho", data, output)
    ds = load(output)
    rows = {row["id"]: row for row in ds}
    assert sorted(rows) == ["Creaking pier, old", "river_mouth3"]
    assert rows["Creaking pier, old"]["captions"][1] == "Waves lap, wood creaks"
    assert all(len(row["captions"]) == 5 for row in rows.values())
    assert stats["skipped"] == {"path_escapes_root": 1, "missing_audio": 1, "empty_field": 1}
    assert where(stats) == [("empty_field", "clotho/clotho_captions_evaluation.csv:6"),
                            ("path_escapes_root", "clotho/clotho_captions_evaluation.csv:4")]


def test_the_retrieval_evaluation_reads_a_built_benchmark(tmp_path, tiny_zoo, cli_build, write_clip):
    data = tmp_path / "audiocaps"
    data.mkdir()
    (data / "test.csv").write_text(AUDIOCAPS)
    write_clip(data / "Y--PJHxphWEs.wav", seed=3)
    write_clip(data / "-0RWZT-miFs_420.000_430.000.wav", seed=4)
    cli_build("audiocaps", data, tmp_path / "built")
    report = run_retrieval_eval(str(tiny_zoo["clap"]), str(tmp_path / "built"), tmp_path / "report",
                                device="cpu", n_resamples=0)
    sizes = {(row["task"], row["metric"]): row["n"] for row in report["results"]}
    assert sizes["t2a", "R@1"] == 8 and sizes["a2t", "R@1"] == 2  # 5 + 3 captions, 2 clips
    # the report says how much of the benchmark it scored (2 of the 4 clips its CSV names) and its settings
    assert report["benchmarks"] == {"built": {"scored": 2, "size": 4, "partial": True}}
    assert report["settings"]["map_protocol"] == "sorted" and report["settings"]["n_resamples"] == 0


def _audiocaps(tmp_path, csv_text=AUDIOCAPS, name="test.csv"):
    data = tmp_path / "audiocaps"
    data.mkdir(exist_ok=True)
    (data / name).write_text(csv_text)
    return data


def test_audiocaps_matches_the_start_time_a_file_name_carries(tmp_path, cli_build, load, write_clip):
    data = _audiocaps(tmp_path)
    clips = tmp_path / "clips"
    write_clip(clips / "--PJHxphWEs_999.000_1009.000.wav")  # another segment of the video: not the row's
    write_clip(clips / "-0RWZT-miFs_90.000_100.000.wav")
    write_clip(clips / "-0RWZT-miFs_420.000_430.000.wav", seed=1)  # the row's segment, beside another one
    write_clip(clips / "YZZZmissing1.wav", seed=2)  # named by the YouTube id alone: taken for any start
    stats = cli_build("audiocaps", data, tmp_path / "built", "--audio-root", str(clips))
    rows = {row["id"]: row for row in load(tmp_path / "built")}
    assert sorted(rows) == ["-0RWZT-miFs", "ZZZmissing1"]
    assert rows["-0RWZT-miFs"]["audio"].metadata.path == str(clips / "-0RWZT-miFs_420.000_430.000.wav")
    with open(tmp_path / "built" / "missing_clips.csv", newline="") as handle:
        assert [row["reference"] for row in csv.DictReader(handle)] == ["--PJHxphWEs_30"]
    assert stats["skipped"] == {"missing_audio": 5, "empty_field": 1}


def test_a_clip_list_pins_the_test_clips_and_the_report_counts_them(tmp_path, cli_build, load, write_clip):
    """The literature's AudioCaps test set is the clips still downloadable (957 of 975): a list pins them."""
    data = _audiocaps(tmp_path)
    write_clip(data / "Y--PJHxphWEs.wav")
    write_clip(data / "-0RWZT-miFs_420.000_430.000.wav")  # on disk, not on the list: left out
    (tmp_path / "957.txt").write_text("# the clips downloadable in 2024\nY--PJHxphWEs.wav\nZZZmissing1_0.000_10.000\n"
                                      "notInTheCSV\n")
    output = tmp_path / "built"
    stats = cli_build("audiocaps", data, output, "--clip-list", str(tmp_path / "957.txt"))
    assert load(output)["id"] == ["--PJHxphWEs"]
    assert stats["clip_list"] == {"file": str(tmp_path / "957.txt"), "listed": 3, "found": 1,
                                  "not_in_metadata": 1, "left_out": 2}
    assert stats["skipped"] == {"missing_audio": 2}  # ZZZmissing1's two caption rows: listed, not on disk
    assert stats["benchmark_clips"] == 4  # the leakage guard still records every clip of test.csv
    assert main(["build", "clotho", "--data-dir", str(data), "--output", str(tmp_path / "x"),
                 "--clip-list", str(tmp_path / "none.txt")]) == 2


def test_the_split_is_named_by_the_data_file_or_split_and_only_test_sets_are_recorded(
    tmp_path, cli_build, load, write_clip
):
    data = _audiocaps(tmp_path, "audiocap_id,youtube_id,start_time,caption\n1,--PJHxphWEs,30,A man speaks\n",
                      name="train.csv")
    write_clip(data / "Y--PJHxphWEs.wav")
    stats = cli_build("audiocaps", data, tmp_path / "train-built", "--data-file", str(data / "train.csv"))
    assert (stats["splits"], stats["leakage_guard"]) == (["train"], "not a test set")
    assert load(tmp_path / "train-built", "train")["id"] == ["--PJHxphWEs"]
    assert recorded_benchmarks() == []

    stats = cli_build("audiocaps", data, tmp_path / "as-test", "--data-file", str(data / "train.csv"),
                      "--split", "test")
    assert (stats["splits"], stats["leakage_guard"]) == (["test"], "recorded")
    assert any("--split test, but" in warning and "train file" in warning for warning in stats["warnings"])
    assert recorded_benchmarks() == [tmp_path / "as-test"]
    stats = cli_build("audiocaps", data, tmp_path / "as-test", "--data-file", str(data / "train.csv"))
    assert recorded_benchmarks() == []  # rebuilt as the train split it is: no longer a test set


CLOTHO_HEADER = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
KOREAN = ["개가 짖는다", "비가 내린다", "새가 운다", "바람이 분다", "문이 닫힌다"]


def test_clotho_in_cp949_needs_its_encoding_and_a_bom_is_said(tmp_path, cli_build, load, write_clip):
    data = tmp_path / "clotho"
    write_clip(data / "evaluation" / "dog.wav")
    write_clip(data / "evaluation" / "rain.wav")
    text = CLOTHO_HEADER + f"dog.wav,{','.join(KOREAN)}\n" + "rain.wav,Rain falls,Rain,Drops,Water,Storm\n"
    (data / "clotho_captions_evaluation.csv").write_bytes(text.encode("cp949"))
    stats = cli_build("clotho", data, tmp_path / "guessed")
    assert load(tmp_path / "guessed")["id"] == ["rain"]  # never a caption of replacement characters
    assert stats["skipped"] == {"undecodable_text": 1}
    assert any("is not valid UTF-8" in warning and "--encoding" in warning for warning in stats["warnings"])
    assert stats["problems"][0]["where"] == f"{data}/clotho_captions_evaluation.csv:2"

    stats = cli_build("clotho", data, tmp_path / "cp949", "--encoding", "cp949")
    assert (stats["skipped"], stats["warnings"]) == ({}, [])
    assert {row["id"]: row["captions"] for row in load(tmp_path / "cp949")}["dog"] == KOREAN
    assert main(["build", "clotho", "--data-dir", str(data), "--output", str(tmp_path / "x"),
                 "--encoding", "no-such-codec"]) == 2

    (data / "clotho_captions_evaluation.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    stats = cli_build("clotho", data, tmp_path / "bom")
    assert {row["id"]: row["captions"] for row in load(tmp_path / "bom")}["dog"] == KOREAN
    assert any("byte-order mark" in warning for warning in stats["warnings"]) and stats["skipped"] == {}


def test_a_build_whose_every_row_is_undecodable_asks_for_the_encoding(tmp_path, capsys, write_clip):
    data = tmp_path / "clotho"
    write_clip(data / "evaluation" / "dog.wav")
    write_clip(data / "evaluation" / "bird.wav")
    rows = f"dog.wav,{','.join(KOREAN)}\n" + f"bird.wav,{','.join(reversed(KOREAN))}\n"
    (data / "clotho_captions_evaluation.csv").write_bytes((CLOTHO_HEADER + rows).encode("cp949"))
    assert main(["build", "clotho", "--data-dir", str(data), "--output", str(tmp_path / "built")]) == 2
    (message,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fusion-datasets:")]
    assert "0 clips written; 2 metadata lines read, 2 skipped (undecodable_text: 2)" in message
    assert "Give the metadata's text encoding with --encoding (cp949, cp1252, ...)" in message
    assert "--data-dir" not in message  # the folders were right: the audio was never looked up
