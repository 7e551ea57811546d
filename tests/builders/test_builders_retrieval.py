"""The retrieval benchmarks: one row per clip with its captions, as the retrieval evaluation reads them."""

import datasets

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


def test_audiocaps_groups_the_captions_of_each_clip(tmp_path, cli_build, load, write_clip, where):
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
        "../secret.wav,A secret,b,c,d,e\n"
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
