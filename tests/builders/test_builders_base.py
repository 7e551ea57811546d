import pytest

from fusion_datasets.builders import BUILDERS, BuildReport, benchmark_clip_ids, build, clip_key
from fusion_datasets.builders.names import audioset_name
from fusion_datasets.builders.readers import read_csv, read_json_rows
from fusion_datasets.config import ConfigError


def test_every_name_of_the_spec_has_a_builder():
    assert sorted(BUILDERS) == sorted([
        "audioset", "folder", "fusionaudio", "audiocaps", "clotho", "esc50", "urbansound8k", "fsd50k",
        "fsdnoisy18k", "tau-urban", "clotho-aqa", "audiocaps-qa", "wavcaps-qa", "air-bench-foundation",
        "air-bench-chat",
    ])


def test_read_csv_keeps_quoted_commas_and_reports_bad_lines_with_their_line(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text(
        "# a comment line\n"
        "file_name,caption\n"
        '"Creaking pier, old.wav","A pier creaks, then ""groans"""\n'
        "\n"
        'multi.wav,"a caption\nover two lines"\n'
        "too,many,fields\n"
        "after.wav,fine\n"
        'truncated.wav,"an unclosed quote'
    )
    report = BuildReport("test")
    rows = list(read_csv(path, report))
    assert rows == [
        (3, {"file_name": "Creaking pier, old.wav", "caption": 'A pier creaks, then "groans"'}),
        (5, {"file_name": "multi.wav", "caption": "a caption\nover two lines"}),
        (8, {"file_name": "after.wav", "caption": "fine"}),
        (9, {"file_name": "truncated.wav", "caption": "an unclosed quote"}),
    ]
    assert report.skipped == {"bad_csv_line": 1}
    assert report.read == {"metadata lines": 5}  # the data lines, not the comment, header or blank line
    assert report.problems[0]["where"] == f"{path}:7"
    with pytest.raises(ValueError, match="meta.csv:2: expected the header line, naming the columns caption_1; "
                                         "read 'file_name,caption' instead"):
        list(read_csv(path, report, columns=("caption_1",)))


def test_read_json_rows_keeps_the_rows_of_a_truncated_file_and_names_lines(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('[\n  {"audio_id": "a.wav", "output": "yes"},\n  ["not", "a row"],\n'
                    '  {"audio_id": "b.wav",\n   "output": "no"},\n  {"audio_id": "c.wav", "outp')
    report = BuildReport("test")
    rows = list(read_json_rows(path, report))
    assert rows == [(f"{path}:2", {"audio_id": "a.wav", "output": "yes"}),
                    (f"{path}:4", {"audio_id": "b.wav", "output": "no"})]
    assert report.skipped == {"bad_json_row": 1, "truncated_json": 1}
    assert report.read == {"JSON objects": 4}
    assert [problem["where"] for problem in report.problems] == [f"{path}:3", f"{path}:6"]


@pytest.mark.parametrize(("name", "expected"), [
    ("Y--PJHxphWEs.wav", "--PJHxphWEs"),
    ("--PJHxphWEs_30.000_40.000.flac", "--PJHxphWEs"),
    ("/authors/AudioCaps/test/Yabc-def_ghi_30.wav", "abc-def_ghi"),
    ("Yabcdefghij.wav", "Yabcdefghij"),  # an 11-character id that starts with Y
    ("clotho/evaluation/river_mouth3.wav", "river_mouth3"),
])
def test_clip_keys_are_youtube_ids_or_stems(name, expected):
    assert clip_key(name) == expected


def test_audioset_names_carry_the_start_time():
    assert audioset_name("-0RWZT-miFs_420.000_430.000") == ("-0RWZT-miFs", 420.0)
    assert audioset_name("-0RWZT-miFs_420-430") == ("-0RWZT-miFs", 420.0)
    assert audioset_name("Creaking pier") is None


def test_bad_options_and_outputs_are_refused_before_building(tmp_path):
    with pytest.raises(ValueError, match="unknown builder 'esc-50'; choose one of .*esc50"):
        build("esc-50", tmp_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown key exclude; allowed: .*vocabulary"):
        build("esc50", tmp_path, tmp_path / "out", exclude=["x"])
    with pytest.raises(ConfigError, match="trimmed: expected true or false, got 'maybe'"):
        build("audioset", tmp_path, tmp_path / "out", trimmed="maybe")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty and holds no earlier build"):
        build("esc50", tmp_path, tmp_path / "home")
    with pytest.raises(FileNotFoundError, match="none of .*meta/esc50.csv"):
        build("esc50", tmp_path, tmp_path / "out")


def test_the_leakage_guard_only_reads_built_benchmarks(tmp_path):
    with pytest.raises(ValueError, match="no built benchmark"):
        benchmark_clip_ids(tmp_path)
