"""The classification benchmarks, from their native metadata and from the FusionAudio eval JSON."""

import csv
import json
import os

import datasets
import pyarrow.parquet as pq

from fusion_datasets.cli import main


def _vocabulary(output, indices=False):
    with open(output / "vocabulary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [(int(row["index"]), row["label"]) if indices else row["label"] for row in rows]


ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def test_esc50_from_its_metadata_keeps_folds_and_every_class(tmp_path, cli_build, load, write_clip):
    data = tmp_path / "ESC-50-master"
    (data / "meta").mkdir(parents=True)
    (data / "meta" / "esc50.csv").write_text(
        ESC50_HEADER
        + "1-100038-A-14.wav,1,14,chirping_birds,False,100038,A\n"
        "1-100210-A-36.wav,1,36,vacuum_cleaner,False,100210,A\n"
        "1-115545-A-48.wav,1,48,fireworks,False,115545,A\n"
        "2-102414-C-17.wav,2,17,pouring_water,False,102414,C\n"
        "2-1-A-x.wav,2,x,broken_target,False,1,A\n"
    )
    for name in ("1-100038-A-14", "1-100210-A-36", "2-102414-C-17"):
        write_clip(data / "audio" / f"{name}.wav")
    output = tmp_path / "built"
    stats = cli_build("esc50", data, output)
    ds = load(output)
    assert ds.features["labels"] == datasets.List(datasets.Value("string"))
    assert {row["id"]: (row["labels"], row["fold"]) for row in ds} == {
        "1-100038-A-14": (["chirping_birds"], 1), "1-100210-A-36": (["vacuum_cleaner"], 1),
        "2-102414-C-17": (["pouring_water"], 2)}
    assert ds[0]["audio_id"] == "audio/1-100038-A-14.wav"
    assert stats["skipped"] == {"missing_audio": 1, "bad_csv_line": 1} and (output / "missing_clips.csv").exists()
    # the metadata's classes with their own ids (target), fireworks too although none of its clips is here
    assert _vocabulary(output, indices=True) == [(14, "chirping_birds"), (17, "pouring_water"),
                                                 (36, "vacuum_cleaner"), (48, "fireworks")]
    assert stats["classes_without_clips"] == {"test": ["fireworks"]}
    assert "test: 1 of 4 classes have no clips (fireworks)" in stats["warnings"]

    write_clip(data / "audio" / "1-115545-A-48.wav")  # rebuilt in place: loads the new rows, not a cache
    assert cli_build("esc50", data, output)["skipped"] == {"bad_csv_line": 1} and load(output).num_rows == 4
    assert not (output / "missing_clips.csv").exists() and len(list(output.rglob("*.parquet"))) == 1


def test_esc50_from_the_fusionaudio_json_and_its_vocabulary(tmp_path, cli_build, load, write_clip, where):
    data = tmp_path / "eval"
    (data / "vocabulary").mkdir(parents=True)
    (data / "vocabulary" / "ESC50.csv").write_text("1,wind\n2,car_horn\n3,rooster\n")
    (data / "vocabulary" / "UrbanSound8K.csv").write_text("1,dog_bark\n")
    authors = "/wangbenyou/xinyuan/ECHO-AQA/data/eval/Task1_ESC50/ESC-50-master/audio"
    rows = [{"instruction": "Caption the audio.", "input": "", "audio_id": audio_id, "output": label}
            for audio_id, label in [(f"{authors}/2-100648-A-43.wav", "car_horn"),
                                    (f"{authors}/2-100786-A-1.wav", "rooster"),
                                    (f"{authors}/2-1-A-9.wav", "crow"),
                                    ("audio/../../etc/passwd.wav", "wind")]]
    (data / "ESC50_test.json").write_text(json.dumps(rows, indent=1))
    write_clip(tmp_path / "ESC-50-master" / "audio" / "2-100648-A-43.wav")
    write_clip(tmp_path / "ESC-50-master" / "audio" / "2-100786-A-1.wav")
    output = tmp_path / "built"
    stats = cli_build("esc50", data, output, "--audio-root", str(tmp_path / "ESC-50-master"))
    ds = load(output)
    labels = {row["id"]: (row["labels"], row["fold"]) for row in ds}
    assert labels == {"2-100648-A-43": (["car_horn"], 2), "2-100786-A-1": (["rooster"], 2)}  # folds by name
    assert ds[0]["audio_id"] == rows[0]["audio_id"]
    assert ds[0]["audio"].metadata.path == str(tmp_path / "ESC-50-master" / "audio" / "2-100648-A-43.wav")
    assert where(stats) == [("path_escapes_root", "eval/ESC50_test.json:20"),
                            ("unknown_label", "eval/ESC50_test.json:14")]
    assert _vocabulary(output) == ["wind", "car_horn", "rooster"]


US8K_CLASSES = ["air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
                "gun_shot", "jackhammer", "siren", "street_music"]


def test_urbansound8k_partial_build_keeps_folds_and_all_ten_classes(tmp_path, cli_build, load, write_clip):
    data = tmp_path / "UrbanSound8K"
    (data / "metadata").mkdir(parents=True)
    lines = [f"{100 + class_id}-{class_id}-0-0.wav,{100 + class_id},0.0,4.0,1,{class_id % 10 + 1},{class_id},{label}"
             for class_id, label in reversed(list(enumerate(US8K_CLASSES)))]  # not in id order
    (data / "metadata" / "UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n" + "\n".join(lines) + "\n")
    write_clip(data / "audio" / "fold4" / "103-3-0-0.wav")
    write_clip(data / "audio" / "fold9" / "108-8-0-0.wav")
    write_clip(data / "audio" / "fold1" / "102-2-0-0.wav")  # in the wrong fold: not found
    output = tmp_path / "built"
    stats = cli_build("urbansound8k", data, output)
    assert {row["id"]: (row["labels"], row["fold"]) for row in load(output)} == {
        "103-3-0-0": (["dog_bark"], 4), "108-8-0-0": (["siren"], 9)}
    assert stats["skipped"] == {"missing_audio": 8}
    assert _vocabulary(output, indices=True) == list(enumerate(US8K_CLASSES))  # classID, not those found
    assert stats["classes_without_clips"]["test"] == [label for label in US8K_CLASSES
                                                      if label not in ("dog_bark", "siren")]
    assert any("8 of 10 classes have no clips" in warning for warning in stats["warnings"])


def test_a_symlinked_audio_folder_is_the_users_layout(tmp_path, cli_build, load, write_clip):
    """ESC-50 with ``audio/`` on another disk: a symlink inside the data folder is no escape."""
    data, disk = tmp_path / "ESC-50-master", tmp_path / "other-disk" / "esc50-audio"
    (data / "meta").mkdir(parents=True)
    (data / "meta" / "esc50.csv").write_text(ESC50_HEADER + "1-100038-A-14.wav,1,14,chirping_birds,False,100038,A\n"
                                             "1-100210-A-36.wav,1,36,vacuum_cleaner,False,100210,A\n")
    write_clip(disk / "1-100038-A-14.wav")
    write_clip(tmp_path / "other-disk" / "one-file.wav", seed=1)
    os.symlink(disk, data / "audio")
    os.symlink(tmp_path / "other-disk" / "one-file.wav", disk / "1-100210-A-36.wav")  # a linked file, too
    output = tmp_path / "built"
    stats = cli_build("esc50", data, output)
    assert (stats["written"], stats["skipped"], stats["warnings"]) == (2, {}, [])
    ds = load(output)
    assert ds[0]["audio"].metadata.path == str(data / "audio" / "1-100038-A-14.wav")  # the link is kept
    assert all(row["audio"].get_all_samples().data.shape[1] > 0 for row in ds)


def test_a_build_that_writes_nothing_fails_with_its_counts(tmp_path, capsys, cli_build):
    data = tmp_path / "ESC-50-master"
    (data / "meta").mkdir(parents=True)
    (data / "meta" / "esc50.csv").write_text(ESC50_HEADER + "1-100038-A-14.wav,1,14,chirping_birds,False,100038,A\n"
                                             "1-100210-A-36.wav,1,36,vacuum_cleaner,False,100210,A\n")
    output = tmp_path / "built"
    assert main(["build", "esc50", "--data-dir", str(data), "--output", str(output)]) == 2
    message = _error(capsys)
    assert f"esc50: no rows to write from {data}: 0 clips written; 2 metadata lines read, 2 skipped " \
           "(missing_audio: 2)" in message
    assert f"{data}/meta/esc50.csv:2: audio 'audio/1-100038-A-14.wav' not found" in message
    assert f"Check --data-dir and --audio-root (audio is looked up under {data})" in message
    assert "--allow-empty" in message and not output.exists()

    stats = cli_build("esc50", data, output, "--allow-empty")
    (parquet,) = output.rglob("*.parquet")  # load_dataset refuses a split without rows: read the file
    assert (stats["written"], stats["missing_clips"], pq.read_table(parquet).num_rows) == (0, 2, 0)
    assert main(["build", "esc50", "--data-dir", str(tmp_path / "nowhere"), "--output", str(output)]) == 2
    assert "--data-dir" in capsys.readouterr().err


def _error(capsys) -> str:
    """The one paragraph a user error prints."""
    (message,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fusion-datasets:")]
    return message


def test_a_metadata_file_without_its_header_line_is_quoted_with_the_columns_expected(tmp_path, capsys):
    data = tmp_path / "ESC-50-master"
    (data / "meta").mkdir(parents=True)
    first = "1-100038-A-14.wav,1,14,chirping_birds,False,100038,A"  # ESC-50's first data line, its header lost
    (data / "meta" / "esc50.csv").write_text(f"{first}\n1-100210-A-36.wav,1,36,vacuum_cleaner,False,100210,A\n")
    assert main(["build", "esc50", "--data-dir", str(data), "--output", str(tmp_path / "built")]) == 2
    message = _error(capsys)
    assert f"{data}/meta/esc50.csv:1: expected the header line, naming the columns filename, fold, target, " \
           f"category; read {first!r} instead (no filename, fold, target, category)" in message
    assert "put the dataset's own header line back" in message and not (tmp_path / "built").exists()

    tau = tmp_path / "TAU-urban"  # TAU's meta.csv is tab-separated: one saved with commas is one column
    tau.mkdir()
    (tau / "meta.csv").write_text("filename,scene_label,identifier,source_label\naudio/a.wav,park,x-1,a\n")
    assert main(["build", "tau-urban", "--data-dir", str(tau), "--output", str(tmp_path / "tau-built")]) == 2
    assert "naming the columns filename, scene_label separated by '\\t'; read " \
           "'filename,scene_label,identifier,source_label' instead" in _error(capsys)


def test_fsd50k_is_multi_label_and_checks_its_vocabulary(tmp_path, cli_build, load, write_clip, where):
    data = tmp_path / "FSD50K"
    (data / "FSD50K.ground_truth").mkdir(parents=True)
    (data / "FSD50K.ground_truth" / "vocabulary.csv").write_text(
        "0,Electric_guitar,/m/02sgy\n1,Guitar,/m/0342h\n2,Music,/m/04rlf\n3,Bark,/m/05tny_\n")
    (data / "FSD50K.ground_truth" / "eval.csv").write_text(
        "fname,labels,mids\n"
        '37199,"Electric_guitar,Guitar,Music","/m/02sgy,/m/0342h,/m/04rlf"\n'
        "175151,Bark,/m/05tny_\n"
        '99,"Bark,Meow","/m/05tny_,/m/07qrkrw"\n'
    )
    (data / "FSD50K.ground_truth" / "dev.csv").write_text(
        'fname,labels,mids,split\n64760,"Guitar,Music","/m/0342h,/m/04rlf",train\n')
    write_clip(data / "FSD50K.eval_audio" / "37199.wav")
    write_clip(data / "FSD50K.eval_audio" / "175151.wav")
    write_clip(data / "FSD50K.eval_audio" / "99.wav")
    write_clip(data / "FSD50K.dev_audio" / "64760.wav")
    output = tmp_path / "built"
    stats = cli_build("fsd50k", data, output)
    assert {row["id"]: row["labels"] for row in load(output)} == {
        "37199": ["Electric_guitar", "Guitar", "Music"], "175151": ["Bark"]}
    assert load(output, "dev")["labels"] == [["Guitar", "Music"]]
    assert where(stats) == [("unknown_label", "FSD50K/FSD50K.ground_truth/eval.csv:4")]
    assert _vocabulary(output) == ["Electric_guitar", "Guitar", "Music", "Bark"]


def test_fsd50k_labels_from_the_fusionaudio_json(tmp_path, cli_build, load, write_clip):
    data = tmp_path / "eval"
    data.mkdir()
    row = {"instruction": "Identify noise.", "input": "", "dataset": "fsd50k_eval", "task": "cla_label",
           "audio_id": "/authors/Task7_FSD50K/audio/clips/eval/37199.wav",
           "output": "Labels: Electric guitar; Guitar; Plucked string instrument"}
    (data / "FSD50K_test.json").write_text(json.dumps([row]))
    write_clip(tmp_path / "clips" / "eval" / "37199.wav")
    cli_build("fsd50k", data, tmp_path / "built", "--audio-root", str(tmp_path / "clips"))
    assert load(tmp_path / "built")["labels"] == [["Electric guitar", "Guitar", "Plucked string instrument"]]


def test_fsdnoisy18k_from_its_test_metadata(tmp_path, cli_build, load, write_clip):
    data = tmp_path / "FSDnoisy18k"
    (data / "FSDnoisy18k.meta").mkdir(parents=True)
    (data / "FSDnoisy18k.meta" / "test.csv").write_text(
        "fname,label,freesound_id,license\n"
        "00a7ad50.wav,Coin_(dropping),388406,Attribution\n"
        "0a2d5e5e.wav,Walk_or_footsteps,170787,Creative Commons 0\n"
    )
    write_clip(data / "FSDnoisy18k.audio_test" / "00a7ad50.wav")
    write_clip(data / "FSDnoisy18k.audio_test" / "0a2d5e5e.wav")
    stats = cli_build("fsdnoisy18k", data, tmp_path / "built")
    assert load(tmp_path / "built")["labels"] == [["Coin_(dropping)"], ["Walk_or_footsteps"]]
    assert stats["written"] == 2 and stats["skipped"] == {}


def test_tau_urban_reads_its_tab_separated_metadata(tmp_path, cli_build, load, write_clip, where):
    data = tmp_path / "TAU-urban-acoustic-scenes-2020-mobile-development"
    data.mkdir()
    (data / "meta.csv").write_text(
        "filename\tscene_label\tidentifier\tsource_label\n"
        "audio/airport-barcelona-0-0-a.wav\tairport\tbarcelona-0\ta\n"
        "audio/street_traffic-lyon-1-2-b.wav\tstreet_traffic\tlyon-1\tb\n"
        "audio/park-milan-2-3-a.wav"
    )
    write_clip(data / "audio" / "airport-barcelona-0-0-a.wav")
    write_clip(data / "audio" / "street_traffic-lyon-1-2-b.wav")
    stats = cli_build("tau-urban", data, tmp_path / "built")
    assert load(tmp_path / "built")["labels"] == [["airport"], ["street_traffic"]]
    assert where(stats) == [("bad_csv_line", f"{data.name}/meta.csv:4")]
