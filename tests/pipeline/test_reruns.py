"""Reruns as users make them: another part size, clips added and removed, a changed stage, bad ids, empty
inputs, an output inside its input. After each, every input id is in ``cues`` exactly once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from fusion_datasets.cli import main
from fusion_datasets.testing import media

FAST = ("--set", "experts.separation.enabled=false", "--set", "experts.visual.enabled=false",
        "--set", "experts.music.enabled=false")


@pytest.fixture
def clips(tmp_path) -> Path:
    folder = tmp_path / "clips"
    for index in range(5):
        media.write_audio(folder / f"clip{index}.wav", media.noise(1.0, 16000, seed=index), 16000)
    media.write_audio(folder / "speech.wav", media.speech(1.5, 16000), 16000)
    return folder


def run(clips: Path, output: Path, *extra: str) -> int:
    return main(["run", "tiny", "--input", str(clips), "--output", str(output), "--set", "output.shard_size=2",
                 *FAST, *extra])


def rows(output: Path, config: str = "cues") -> datasets.Dataset:
    return datasets.load_dataset(str(output), config, split="train", download_mode="force_redownload")


def stats(output: Path) -> dict:
    return json.loads((output / "stats.json").read_text())


def part_files(output: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in sorted((output / "data").rglob("*.parquet"))}


def assert_every_clip_once(output: Path, ids: list[str], qa: bool = True) -> None:
    cues = rows(output)
    assert sorted(cues["id"]) == sorted(ids)
    captions = rows(output, "captions")
    assert len(set(captions["id"])) == captions.num_rows and set(captions["id"]) <= set(ids)
    if qa:
        pairs = rows(output, "qa")
        assert len(set(pairs["id"])) == pairs.num_rows and set(pairs["clip_id"]) <= set(captions["id"])
    else:
        assert not list((output / "data" / "qa").glob("*.parquet"))
    summary = stats(output)
    assert summary["complete"] and summary["clips"] == len(ids) and summary["clips_to_do"] == 0


def ids_of(folder: Path) -> list[str]:
    return sorted(path.stem for path in folder.glob("*.wav"))


def test_another_part_size_reruns_nothing_and_repeats_nothing(tmp_path, tiny_zoo, clips):
    output = tmp_path / "out"
    assert run(clips, output) == 0
    before = part_files(output)
    assert run(clips, output, "--set", "output.shard_size=4") == 0
    assert run(clips, output, "--num-shards", "1") == 0
    assert part_files(output) == before  # the same files, untouched
    assert_every_clip_once(output, ids_of(clips))


def test_added_clips_are_processed_and_removed_ones_reported_kept_or_dropped(tmp_path, tiny_zoo, clips, capsys):
    output = tmp_path / "out"
    assert run(clips, output) == 0
    before = part_files(output)
    media.write_audio(clips / "late.wav", media.music(1.0, 16000), 16000)

    assert run(clips, output, "--dry-run") == 0
    assert "6 clips already done, 1 new clips to do in 1 parts" in capsys.readouterr().out
    assert run(clips, output) == 0
    assert all(path.exists() and path.stat().st_mtime_ns == mtime for path, mtime in before.items())
    assert_every_clip_once(output, ids_of(clips))

    assert run(clips, output, "--retry-errors") == 0  # nothing failed: nothing to do, nothing repeated
    assert_every_clip_once(output, ids_of(clips))

    (clips / "clip0.wav").unlink()
    assert run(clips, output) == 0
    assert "clip0" in rows(output)["id"] and stats(output)["clips_not_in_input"] == 1  # reported, kept
    assert run(clips, output, "--set", "output.removed_clips=drop") == 0
    assert_every_clip_once(output, ids_of(clips))
    assert stats(output)["clips_not_in_input"] == 0


def test_a_changed_stage_reruns_itself_and_its_readers_only(tmp_path, tiny_zoo, clips):
    output = tmp_path / "out"
    assert run(clips, output) == 0
    first = stats(output)["stages"]
    clips_count = len(ids_of(clips))
    assert first["speech"]["rows"] == first["fusion"]["rows"] == clips_count

    assert run(clips, output, "--set", "fusion.max_new_tokens=97") == 0
    second = stats(output)["stages"]
    for stage in ("speech", "tagging", "sound"):  # the experts are not rerun
        assert second[stage]["rows"] == clips_count and second[stage]["seconds"] == first[stage]["seconds"]
    for stage in ("fusion", "clap_filter", "qa"):  # fusion and the stages that read its caption
        assert second[stage]["rows"] == 2 * clips_count
    manifest = json.loads((output / "manifest.json").read_text())
    fusion = next(step for step in manifest["plan"] if step["stage"] == "fusion")
    assert fusion["settings"]["max_new_tokens"] == 97
    assert "`max_new_tokens` | 97" in (output / "README.md").read_text() or "97" in (output / "README.md").read_text()
    assert_every_clip_once(output, ids_of(clips))

    assert run(clips, output, "--set", "fusion.max_new_tokens=97", "--set", "experts.speech.enabled=false") == 0
    third = stats(output)["stages"]
    cues = rows(output)
    assert "asr_text" not in cues.column_names  # the removed stage's columns are gone
    assert third["tagging"]["rows"] == clips_count and third["fusion"]["rows"] == 3 * clips_count
    assert_every_clip_once(output, ids_of(clips))

    # a stage that no other stage reads: its columns go, nothing reruns, and the output is complete again
    assert run(clips, output, "--set", "fusion.max_new_tokens=97", "--set", "experts.speech.enabled=false",
               "--set", "qa.enabled=false") == 0
    assert "qa_pairs" not in rows(output).column_names and stats(output)["stages"]["fusion"] == third["fusion"]
    assert_every_clip_once(output, ids_of(clips), qa=False)


def test_another_filter_threshold_reruns_the_filter_and_qa_which_asks_nothing_of_removed_captions(
        tmp_path, tiny_zoo, clips):
    output = tmp_path / "out"
    assert run(clips, output) == 0
    first = stats(output)
    assert first["removed_by_filter"] == first["qa_skipped"] == 0  # the tiny config keeps every caption
    asked = first["llm_usage"]["qa"]["prompt_tokens"]
    assert asked > 0 and first["qa_pairs"] > 0
    assert run(clips, output, "--set", "filter.threshold=1.0") == 0
    summary = stats(output)
    assert summary["stages"]["fusion"]["rows"] == len(ids_of(clips))
    assert summary["stages"]["clap_filter"]["rows"] == summary["stages"]["qa"]["rows"] == 2 * len(ids_of(clips))
    assert summary["removed_by_filter"] == summary["clap_scored"] > 0 and summary["captions"] == 0
    assert sum(pq.read_metadata(path).num_rows for path in (output / "data" / "captions").glob("*.parquet")) == 0
    # QA read the filter's decision: not one request more, and each removed caption counted as skipped
    assert summary["llm_usage"]["qa"]["prompt_tokens"] == asked
    assert summary["qa_skipped"] == summary["removed_by_filter"] and summary["qa_pairs"] == 0
    assert all(pairs is None for pairs in rows(output)["qa_pairs"])
    assert "captions not asked for QA (removed by the CLAP filter)" in (output / "README.md").read_text()


def test_the_clap_filter_scores_the_audio_of_its_own_column(tmp_path, tiny_zoo):
    noise = [media.write_audio(tmp_path / f"noise{i}.wav", media.noise(1.0, 16000, seed=i), 16000) for i in range(2)]
    music = [media.write_audio(tmp_path / f"music{i}.wav", media.music(1.0, 16000, bpm=90 + i), 16000)
             for i in range(2)]
    table = tmp_path / "clips.parquet"
    datasets.Dataset.from_dict({"id": ["a", "b"], "audio": [str(p) for p in noise],
                                "clean_audio": [str(p) for p in music]}).to_parquet(str(table))
    scores = {}
    for column in ("audio", "clean_audio"):
        output = tmp_path / column
        assert run(table, output, "--set", f"filter.audio_column={column}") == 0
        cues = rows(output)
        scores[column] = dict(zip(cues["id"], cues["clap_score"]))
    assert all(score is not None for values in scores.values() for score in values.values())
    assert scores["audio"] != scores["clean_audio"]  # another column, other audio, other scores
    from fusion_datasets.clap.filter import ClapSimilarityFilter

    cues = rows(tmp_path / "clean_audio")
    alone = ClapSimilarityFilter(model=str(tiny_zoo["clap"]), audio_column="clean_audio", threshold=-1.0)
    direct = alone(cues.select_columns(["id", "clean_audio", "caption"])[:])["clap_score"]
    assert direct == pytest.approx([scores["clean_audio"][clip] for clip in cues["id"]], abs=1e-5)


def test_duplicate_and_null_ids_are_refused_before_any_work(tmp_path, tiny_zoo, capsys):
    clip = str(media.write_audio(tmp_path / "a.wav", media.noise(1.0, 16000), 16000))
    for name, ids, expected in (("dupes", ["a", "b", "a"], "'a' (2 times)"), ("nulls", ["a", None, ""], "row 1")):
        table = tmp_path / f"{name}.parquet"
        datasets.Dataset.from_dict({"id": ids, "audio": [clip] * 3}).to_parquet(str(table))
        assert run(table, tmp_path / name) == 2
        message = capsys.readouterr().err
        assert expected in message and "Traceback" not in message
        assert not (tmp_path / name / "data").exists()


def test_empty_inputs_and_bad_limits_are_user_errors(tmp_path, tiny_zoo, clips, capsys):
    empty = tmp_path / "empty.parquet"
    datasets.Dataset.from_dict({"id": [], "audio": []}).to_parquet(str(empty))
    cases = [((empty,), "has no clips (0 rows)"),
             ((clips, "--set", "input.limit=0"), "limit must be null (every clip) or >= 1, got 0"),
             ((clips, "--set", "input.limit=-1"), "got -1")]
    for (source, *extra), expected in cases:
        assert run(source, tmp_path / "out", *extra) == 2
        assert expected in capsys.readouterr().err


def test_an_output_inside_its_input_is_not_read_back(tmp_path, tiny_zoo, clips):
    output = clips / "out"
    assert run(clips, output) == 0
    assert run(clips, output) == 0
    assert_every_clip_once(output, ids_of(clips))


def test_user_errors_are_one_paragraph_and_exit_2(tmp_path, tiny_zoo, clips, capsys):
    listed = tmp_path / "list.yaml"
    listed.write_text("- name: tiny\n")
    cases = [
        (["run", "tiny", "--input", str(tmp_path / "does_not_exist"), "--output", str(tmp_path / "o")],
         "does not exist"),
        (["run", str(listed), "--input", str(clips)], "expected a mapping"),
        (["run", "tiny", "--input", str(clips), "--set", "output.shard_size"], "--set expects key=value"),
        (["run", "tiny", "--input", str(clips), "--set", "experts.speech.modle=x"], "unknown key experts.speech.modle"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(["-v", *cases[0][0]]) == 2
    assert "Traceback" in capsys.readouterr().err  # -v shows where


def test_a_stage_that_fails_on_every_clip_makes_the_run_fail(tmp_path, tiny_zoo, clips, capsys):
    from fusion_datasets.testing.server import free_port

    output = tmp_path / "out"
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = run(clips, output, "--set", "llm.kind=server", "--set", f"llm.base_urls=[{nowhere}]",
               "--set", "llm.max_retries=0", "--set", "qa.enabled=false")
    assert code == 1
    assert "FAILED: fusion failed on every clip" in capsys.readouterr().err
    assert rows(output)["caption"] == [None] * len(ids_of(clips))  # the rows are there, with their errors
    assert stats(output)["errors_by_stage"]["fusion"] == len(ids_of(clips))


def test_a_replaced_part_left_by_a_kill_is_removed_on_the_next_run(tmp_path, tiny_zoo, clips):
    """Killed between a redone part's commit and the removal of the part it replaces."""
    output = tmp_path / "out"
    assert run(clips, output) == 0
    saved = tmp_path / "saved"
    shutil.copytree(output / "data", saved / "data")
    shutil.copytree(output / "state", saved / "state")
    assert run(clips, output, "--set", "fusion.max_new_tokens=97") == 0
    for folder in ("data", "state"):  # the old generation comes back, as if never deleted
        shutil.copytree(saved / folder, output / folder, dirs_exist_ok=True)
    assert run(clips, output, "--set", "fusion.max_new_tokens=97") == 0
    assert_every_clip_once(output, ids_of(clips))
    names = {path.stem for path in (output / "data" / "cues").glob("*.parquet")}
    assert all(name.endswith("-0001") for name in names)
    assert sum(pq.read_metadata(output / "data" / "cues" / f"{name}.parquet").num_rows for name in names) == 6
